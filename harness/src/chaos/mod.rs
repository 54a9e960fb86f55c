//! The fault-injection run (`just chaos`): the real `api` and three `worker` replicas on a
//! throwaway PostgreSQL cluster of their own, provider webhooks and platform events fanning
//! out to twenty configurations (five of them ordered per call) whose receivers fail, hang and
//! reset, a worker SIGKILLed and
//! restarted every few seconds, one PostgreSQL crash and one api SIGKILL mid-run; then the
//! checks of [`verify`]. Everything listens on 127.0.0.1.

pub mod plan;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;

use wirehook_testkit::cluster::{Cluster, ClusterError, Durability};
use wirehook_testkit::db::{DbError, TestDb};
use wirehook_testkit::receiver::{Delivery, Keep, Receiver, Route};

use crate::load::SignalWire;
use crate::procs::{Binaries, Env, Proc, ProcError, ProcSpec, free_local_addr};
use crate::rest::{ApiClient, RestError};
use plan::{Entry, SourceEvent};
use verify::{AttemptRow, Expected, Faults, InboundRow, OutboundRow, Report};

const JWT_SECRET: &str = "chaos-run-jwt-secret-0123456789";
const SIGNALWIRE_KEY: &str = "PSKchaos1234567890abcdef";
/// The longest worker kills go on after the last source event is accepted.
const DRAIN_FAULTS_LIMIT: Duration = Duration::from_secs(90);

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct Options {
    /// Outbound events to produce (rounded up to a multiple of [`plan::FAN_OUT`]).
    pub events: usize,
    /// Worker replicas.
    pub workers: usize,
    /// `WORKER_CONCURRENCY` of each replica.
    pub concurrency: usize,
    /// Concurrent senders of source events.
    pub senders: usize,
    /// Seed of the receivers' answers.
    pub seed: u64,
    /// Time between worker kills.
    pub kill_every: Duration,
    /// How long PostgreSQL stays down.
    pub outage: Duration,
    /// How long everything may take to settle after the load.
    pub settle_timeout: Duration,
    /// Where `api` and `worker` are.
    pub bin_dir: PathBuf,
    /// Where the children's logs go.
    pub log_dir: PathBuf,
}

/// Why a run could not be carried out (a run that finds lost events is not an error).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("PostgreSQL cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("database query: {0}")]
    Query(#[from] sea_orm::DbErr),
    #[error("process: {0}")]
    Proc(#[from] ProcError),
    #[error("api: {0}")]
    Rest(#[from] RestError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The checks' verdict.
    pub report: Report,
    /// From the first source event to the end of the checks.
    pub elapsed: Duration,
    /// Worker kills, PostgreSQL outages and api restarts that happened.
    pub kills: usize,
    pub outages: usize,
    pub api_restarts: usize,
    /// Source events the api answered 2xx, and requests it did not (retried).
    pub accepted: usize,
    pub refused_requests: usize,
}

/// Carries out one run.
pub async fn run(opts: &Options) -> Result<Outcome, ChaosError> {
    let binaries = Binaries::new(&opts.bin_dir);
    binaries.check()?;
    std::fs::create_dir_all(&opts.log_dir)?;
    let cluster = Arc::new(Cluster::start(Durability::Durable).await?);
    eprintln!("chaos: PostgreSQL on 127.0.0.1:{}", cluster.port());
    let db = TestDb::create(&cluster.url(), "chaos").await?;
    binaries.migrate(db.url()).await?;
    let result = run_on(opts, &binaries, &cluster, &db).await;
    drop(db);
    result
}

async fn run_on(
    opts: &Options,
    binaries: &Binaries,
    cluster: &Arc<Cluster>,
    db: &TestDb,
) -> Result<Outcome, ChaosError> {
    let pool = db.connect(4).await?;
    let receiver = Arc::new(Receiver::start(Keep::Arrivals).await?);
    let seed = opts.seed;
    for config in plan::configs() {
        receiver.set_route(
            &config.path,
            Route::new(move |d: &Delivery<'_>| {
                plan::reply(seed, d.webhook_id.unwrap_or(""), d.nth)
            }),
        );
    }

    let common = Env::new().with("RUST_LOG", "warn").with(
        "DELIVERY_TIMEOUT_SECS",
        plan::DELIVERY_TIMEOUT_SECS.to_string(),
    );
    let api_addr = free_local_addr()?;
    let api_env = common
        .clone()
        .with("JWT_SECRET", JWT_SECRET)
        .with("SIGNALWIRE_SIGNING_KEY", SIGNALWIRE_KEY);
    let api = Proc::start(
        binaries,
        ProcSpec::api("api", db.url(), api_addr, &api_env, &opts.log_dir),
    )
    .await?;
    let client = ApiClient::new(binaries, api_addr, JWT_SECRET).await?;
    let mut paths = HashMap::new();
    for config in plan::configs() {
        let (status, answer) = client
            .post(
                "/api/webhooks/config",
                &config.body(&receiver.url(&config.path)),
            )
            .await?;
        let id = answer["webhook"]["id"]
            .as_i64()
            .filter(|_| status == 201)
            .ok_or_else(|| ChaosError::Setup(format!("create config: {status} {answer}")))?;
        paths.insert(id, config.path.clone());
    }

    let mut workers = Vec::new();
    for i in 0..opts.workers {
        let env = common
            .clone()
            .with("WORKER_NAME", format!("chaos-worker-{i}"))
            .with("WORKER_CONCURRENCY", opts.concurrency.to_string())
            .with("WORKER_HEARTBEAT_SECS", "1")
            .with("WORKER_POLL_INTERVAL_MS", "200")
            .with("WORKER_SHUTDOWN_GRACE_SECS", "2");
        let spec = ProcSpec::worker(
            &format!("worker-{i}"),
            db.url(),
            free_local_addr()?,
            &env,
            &opts.log_dir,
        );
        workers.push(Proc::start(binaries, spec).await?);
    }
    eprintln!(
        "chaos: api on {api_addr}, {} workers, receiver on {}; logs in {}",
        workers.len(),
        receiver.addr(),
        opts.log_dir.display()
    );

    let sources = plan::sources(opts.events);
    let total = sources.len();
    let progress = Arc::new(Progress::default());
    let started = Instant::now();

    let injector = {
        let stage = Injector {
            api,
            workers,
            cluster: cluster.clone(),
            progress: progress.clone(),
            total,
            kill_every: opts.kill_every,
            outage: opts.outage,
            seed: opts.seed,
        };
        tokio::spawn(stage.run(started))
    };

    let accepted = send_all(opts, sources, api_addr, &client, &progress).await;
    eprintln!(
        "chaos: {} of {total} source events accepted in {:.1?} ({} requests refused and retried)",
        accepted.len(),
        started.elapsed(),
        progress.refused.load(Ordering::Relaxed)
    );
    // Keep killing workers while the retries drain, until at most 5% of the events are open.
    let drained = Instant::now();
    let quiet_below = i64::try_from(opts.events / 20).unwrap_or(i64::MAX);
    while drained.elapsed() < DRAIN_FAULTS_LIMIT {
        if open_work(&pool).await.is_ok_and(|open| open <= quiet_below) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "chaos: faults stop at {:.2}",
        started.elapsed().as_secs_f64()
    );
    progress.done.store(true, Ordering::Relaxed);
    let stage = injector
        .await
        .map_err(|e| ChaosError::Setup(format!("fault injector: {e}")))??;

    let settled = settle(&pool, opts.settle_timeout).await;
    eprintln!(
        "chaos: {} after {:.1?}",
        if settled { "settled" } else { "NOT settled" },
        started.elapsed()
    );
    let journal = receiver.journal();
    let rows = read_rows(&pool).await?;
    let report = verify::check(
        &Expected {
            accepted,
            fan_out: plan::FAN_OUT,
            max_attempts: plan::MAX_ATTEMPTS,
            paths,
        },
        &rows.inbound,
        &rows.outbound,
        &rows.attempts,
        &journal,
        &stage.faults,
    );
    let outcome = Outcome {
        report,
        elapsed: started.elapsed(),
        kills: stage.faults.kills.len(),
        outages: stage.faults.outages.len(),
        api_restarts: stage.api_restarts,
        accepted: progress.accepted.load(Ordering::Relaxed),
        refused_requests: progress.refused.load(Ordering::Relaxed),
    };
    for mut worker in stage.workers {
        let _ = worker.terminate(Duration::from_secs(5)).await;
    }
    let mut api = stage.api;
    let _ = api.terminate(Duration::from_secs(5)).await;
    Ok(outcome)
}

#[derive(Default)]
struct Progress {
    accepted: AtomicUsize,
    refused: AtomicUsize,
    done: AtomicBool,
}

/// Sends every source event until the api answers it 2xx (as providers retry), from
/// `opts.senders` concurrent senders; returns the keys of the accepted ones.
async fn send_all(
    opts: &Options,
    sources: Vec<SourceEvent>,
    api_addr: std::net::SocketAddr,
    client: &ApiClient,
    progress: &Arc<Progress>,
) -> Vec<String> {
    let http = match crate::load::http_client(opts.senders, Duration::from_secs(10)) {
        Ok(http) => http,
        Err(error) => {
            eprintln!("chaos: cannot build the sender's HTTP client: {error}");
            return Vec::new();
        }
    };
    let base = format!("http://{api_addr}");
    let signalwire = SignalWire::new(&base, &base, SIGNALWIRE_KEY, http);
    let sources = Arc::new(sources);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.senders.max(1) {
        let (sources, next, progress) = (sources.clone(), next.clone(), progress.clone());
        let (signalwire, client) = (signalwire.clone(), client.clone());
        tasks.spawn(async move {
            let mut accepted = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(source) = sources.get(i) else {
                    break;
                };
                loop {
                    let answer: Result<(u16, Value), String> = match source.entry {
                        Entry::SignalWire => signalwire
                            .post(source.body())
                            .await
                            .map_err(|e| e.to_string()),
                        Entry::Platform => {
                            let body: Value =
                                serde_json::from_slice(&source.body()).unwrap_or(Value::Null);
                            client
                                .post("/api/webhooks/events", &body)
                                .await
                                .map_err(|e| e.to_string())
                        }
                    };
                    match answer {
                        Ok((status, _)) if (200..300).contains(&status) => {
                            accepted.push(source.key.clone());
                            progress.accepted.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok((status, body)) if status < 500 => {
                            eprintln!("chaos: {} refused for good: {status} {body}", source.key);
                            break;
                        }
                        _ => {
                            progress.refused.fetch_add(1, Ordering::Relaxed);
                            if Instant::now() > deadline {
                                eprintln!("chaos: {} never accepted", source.key);
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
            accepted
        });
    }
    let mut accepted = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(mut part) = done {
            accepted.append(&mut part);
        }
    }
    accepted
}

/// The fault injector: kills a random worker every `kill_every` and starts it again; crashes
/// PostgreSQL once a third of the source events are in, and kills and restarts the api at two
/// thirds; stops once `progress.done` is set (when at most 5% of the deliveries are open).
struct Injector {
    api: Proc,
    workers: Vec<Proc>,
    cluster: Arc<Cluster>,
    progress: Arc<Progress>,
    total: usize,
    kill_every: Duration,
    outage: Duration,
    seed: u64,
}

/// What the injector did, and the processes it leaves running.
struct Stage {
    faults: Faults,
    api_restarts: usize,
    api: Proc,
    workers: Vec<Proc>,
}

impl Injector {
    async fn run(mut self, origin: Instant) -> Result<Stage, ChaosError> {
        let mut faults = Faults {
            origin: Some(origin),
            ..Faults::default()
        };
        let mut api_restarts = 0;
        let mut crashed = false;
        // Spread the seed's bits first: xorshift's first outputs from a small seed are alike.
        let mut rng = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next_kill = Instant::now() + self.kill_every;
        while !self.progress.done.load(Ordering::Relaxed) {
            let accepted = self.progress.accepted.load(Ordering::Relaxed);
            if !crashed && accepted * 3 >= self.total {
                crashed = true;
                let down = Instant::now();
                self.cluster.crash().await?;
                eprintln!("chaos: PostgreSQL crashed (pg_ctl -m immediate)");
                tokio::time::sleep(self.outage).await;
                self.cluster.resume().await?;
                faults.outages.push((down, Instant::now()));
                eprintln!(
                    "chaos: PostgreSQL down from {:.2} to {:.2}",
                    down.duration_since(origin).as_secs_f64(),
                    origin.elapsed().as_secs_f64()
                );
            }
            if api_restarts == 0 && accepted * 3 >= self.total * 2 {
                api_restarts += 1;
                let at = origin.elapsed().as_secs_f64();
                self.api.restart().await?;
                eprintln!(
                    "chaos: api SIGKILLed at {at:.2}, ready again at {:.2}",
                    origin.elapsed().as_secs_f64()
                );
            }
            if Instant::now() >= next_kill {
                let workers = &mut self.workers;
                if !workers.is_empty() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let victim = (rng % workers.len() as u64) as usize;
                    faults.kills.push(Instant::now());
                    eprintln!(
                        "chaos: SIGKILL worker-{victim} at {:.2}",
                        origin.elapsed().as_secs_f64()
                    );
                    restart_worker(&mut workers[victim]).await?;
                }
                next_kill = Instant::now() + self.kill_every;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Stage {
            faults,
            api_restarts,
            api: self.api,
            workers: self.workers,
        })
    }
}

/// SIGKILLs a worker and starts it again; a start that fails (e.g. PostgreSQL still
/// recovering) is tried again for up to 30 s.
async fn restart_worker(worker: &mut Proc) -> Result<(), ChaosError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match worker.restart().await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() < deadline => {
                eprintln!("chaos: worker restart failed, trying again: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Waits until no outbound event is pending and no delivery job is pending or running; false
/// after `limit`.
async fn settle(pool: &DatabaseConnection, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        match open_work(pool).await {
            Ok(0) => return true,
            Ok(n) => last = format!("{n} open"),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            eprintln!("chaos: still {last} at the settle deadline");
            for line in open_work_detail(pool).await.unwrap_or_default() {
                eprintln!("chaos: open: {line}");
            }
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What each event still pending is waiting for (its state, its configuration's, its jobs'),
/// so that a run that does not settle says why.
async fn open_work_detail(pool: &DatabaseConnection) -> Result<Vec<String>, sea_orm::DbErr> {
    let rows = pool
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT format('event %s attempts %s next_attempt_at %s waiting_on_key %s key %s seq %s \
                    | config %s status %s probe_until %s failed_attempts %s \
                    | jobs %s', e.id, e.attempts, e.next_attempt_at, e.waiting_on_key, \
                    e.ordering_key, e.ordering_seq, c.id, c.status, c.probe_until, \
                    c.failed_attempts, \
                    (SELECT string_agg(j.status || '@' || j.run_at, ',') FROM apalis.jobs j \
                      WHERE convert_from(j.job, 'UTF8') LIKE '%' || e.id || '%')) \
             FROM webhook_events e LEFT JOIN webhook_configs c ON c.id = e.webhook_config_id \
             WHERE e.direction = 'outbound' AND e.status = 'pending' ORDER BY e.id LIMIT 20",
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get_by_index::<String>(0).ok())
        .collect())
}

/// Outbound events still pending plus delivery jobs pending or running.
pub async fn open_work(pool: &DatabaseConnection) -> Result<i64, sea_orm::DbErr> {
    scalar(
        pool,
        "SELECT (SELECT count(*) FROM webhook_events \
                  WHERE direction = 'outbound' AND status = 'pending') \
              + (SELECT count(*) FROM apalis.jobs \
                  WHERE status IN ('Pending', 'Queued', 'Running'))",
    )
    .await
}

async fn scalar(pool: &DatabaseConnection, sql: &str) -> Result<i64, sea_orm::DbErr> {
    let row = pool
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

struct Rows {
    inbound: Vec<InboundRow>,
    outbound: Vec<OutboundRow>,
    attempts: Vec<AttemptRow>,
}

async fn read_rows(pool: &DatabaseConnection) -> Result<Rows, sea_orm::DbErr> {
    let query = |sql: &str| pool.query_all_raw(Statement::from_string(DbBackend::Postgres, sql));
    let inbound = query(
        "SELECT id, COALESCE(provider_payload->>'call_id', dedupe_key) AS key \
         FROM webhook_events WHERE direction = 'inbound'",
    )
    .await?
    .iter()
    .map(|r| {
        Ok(InboundRow {
            id: r.try_get("", "id")?,
            key: r.try_get("", "key")?,
        })
    })
    .collect::<Result<_, sea_orm::DbErr>>()?;
    let outbound = query(
        "SELECT id, message_id, webhook_config_id, parent_event_id, status::text AS status, \
                attempts, ordering_key, ordering_seq \
         FROM webhook_events WHERE direction = 'outbound'",
    )
    .await?
    .iter()
    .map(|r| {
        Ok(OutboundRow {
            id: r.try_get("", "id")?,
            message_id: r.try_get("", "message_id")?,
            config_id: r.try_get("", "webhook_config_id")?,
            parent_event_id: r.try_get("", "parent_event_id")?,
            status: r.try_get("", "status")?,
            attempts: r.try_get("", "attempts")?,
            ordering: r
                .try_get::<Option<String>>("", "ordering_key")?
                .zip(r.try_get::<Option<i64>>("", "ordering_seq")?),
        })
    })
    .collect::<Result<_, sea_orm::DbErr>>()?;
    let attempts = query("SELECT event_id, attempt, status_code, error_kind FROM webhook_attempts")
        .await?
        .iter()
        .map(|r| {
            Ok(AttemptRow {
                event_id: r.try_get("", "event_id")?,
                attempt: r.try_get("", "attempt")?,
                status_code: r.try_get("", "status_code")?,
                error_kind: r.try_get("", "error_kind")?,
            })
        })
        .collect::<Result<_, sea_orm::DbErr>>()?;
    Ok(Rows {
        inbound,
        outbound,
        attempts,
    })
}
