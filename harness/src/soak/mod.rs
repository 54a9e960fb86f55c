//! The soak run (`just soak`): the real `api` and two `worker` replicas on a throwaway
//! PostgreSQL cluster with production durability, a steady load of signed SignalWire webhooks
//! at about half the measured end-to-end capacity for (by default) 30 minutes, receivers that
//! fail 5% and hang on 1% of the deliveries ([`plan`]), and a retention window of minutes so
//! that purges happen during the run. Every sample interval it reads memory, table sizes, queue
//! lag, delivery p99 and CPU per delivery ([`sample`]); at the end it stops the load, waits for
//! the queue to drain and accounts for every accepted event ([`ledger`]), fits a line to the
//! second half of each resource ([`trend`]), and writes `bench/SOAK.md` and `bench/soak.svg`
//! ([`report`], [`plot`]).

pub mod ledger;
pub mod plan;
pub mod plot;
pub mod report;
pub mod sample;
pub mod trend;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use wirehook_testkit::cluster::{Cluster, ClusterError, Durability};
use wirehook_testkit::db::{DbError, TestDb};
use wirehook_testkit::receiver::{Delivery, Keep, Receiver, Route};

use crate::load::{self, SignalWire};
use crate::procs::{Binaries, Env, Proc, ProcError, ProcSpec, free_local_addr};
use crate::rest::{ApiClient, RestError};
use ledger::{Account, Ledger, Received, Row};
use plan::Fate;
use sample::{Answers, Pids, Sample, Sampler};

const JWT_SECRET: &str = "soak-run-jwt-secret-0123456789abc";
const SIGNALWIRE_KEY: &str = "PSKsoak1234567890abcdef";
/// Source events the api accepted so far (for the samples' per-interval counts).
static ANSWERED: AtomicU64 = AtomicU64::new(0);
/// How often accepted source events are matched to their deliveries.
const TRACK_EVERY: Duration = Duration::from_secs(5);
/// How long a stopped process may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the steady load lasts.
    pub duration: Duration,
    /// Source events per second; `None` measures the end-to-end capacity first and offers half.
    pub rate: Option<f64>,
    /// How long the capacity measurement lasts.
    pub calibrate: Duration,
    /// Concurrent connections of the capacity measurement.
    pub connections: usize,
    /// Time between samples.
    pub sample_every: Duration,
    /// The workers' `RETENTION_SECS`.
    pub retention: Duration,
    /// The workers' `JOB_HISTORY_SECS`.
    pub job_history: Duration,
    /// Worker replicas.
    pub workers: usize,
    /// How long the queue may take to drain after the load.
    pub drain_timeout: Duration,
    /// Where `api` and `worker` are.
    pub bin_dir: PathBuf,
    /// Where the children's logs go.
    pub log_dir: PathBuf,
}

/// Why a run could not be carried out (a run that loses events is not an error).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
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

/// How the offered rate was chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum RateSource {
    /// Given with `--rate`.
    Given,
    /// Half the end-to-end capacity measured at the start.
    Measured {
        /// Source events accepted per second by the closed loop.
        ingest: f64,
        /// Deliveries answered per second at the receiver meanwhile (its second half).
        delivered: f64,
        /// How long it ran.
        secs: f64,
        /// Its connections.
        connections: usize,
    },
}

/// Everything a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run's shape.
    pub opts: Options,
    /// Source events per second offered.
    pub rate: f64,
    /// Where that rate came from.
    pub rate_source: RateSource,
    /// The samples, every `sample_every` from the start of the steady load.
    pub samples: Vec<Sample>,
    /// Every accepted event accounted for.
    pub account: Account,
    /// Source events of the steady load the api did not accept (after [`RESENDS`] tries).
    pub refused: u64,
    /// Answers `503 overloaded` during the steady load (each request was sent again).
    pub overloaded: u64,
    /// How long the queue took to drain after the load (`None`: it did not).
    pub drained_after: Option<Duration>,
    /// PostgreSQL's version.
    pub postgres: String,
    /// Durability settings and every setting not at its default.
    pub postgres_settings: Vec<(String, String)>,
    /// The environment of the api and the workers (the run's, not the defaults).
    pub api_env: Env,
    pub worker_env: Env,
}

/// Carries out one run.
pub async fn run(opts: &Options) -> Result<Outcome, SoakError> {
    if opts.retention < Duration::from_secs(60) {
        return Err(SoakError::Setup(
            "the retention window must be at least 60 s: the run learns each event's delivery \
             within seconds, before retention may delete its source event"
                .into(),
        ));
    }
    if let Some(midnight) = day_roll_in_judged_half(chrono::Utc::now(), opts) {
        return Err(SoakError::Setup(format!(
            "this run would cross {midnight} in the half its trends are judged on: the history \
             then starts a new day's partition while the old one holds its space until \
             retention drops it, which reads as growth. Start after that, or shorten the run"
        )));
    }
    let binaries = Binaries::new(&opts.bin_dir);
    binaries.check()?;
    std::fs::create_dir_all(&opts.log_dir)?;
    let cluster = Cluster::start(Durability::Production).await?;
    eprintln!("soak: PostgreSQL on 127.0.0.1:{}", cluster.port());
    let db = TestDb::create(&cluster.url(), "soak").await?;
    binaries.migrate(db.url()).await?;
    let result = run_on(opts, &binaries, &db).await;
    drop(db);
    result
}

/// The UTC midnight, if any, that a run started at `start` would cross while its trends are
/// judged, or shortly before: the events table then holds two days' partitions until the old
/// one is older than the retention window and the next purge pass (every 60 s) drops it.
pub fn day_roll_in_judged_half(
    start: chrono::DateTime<chrono::Utc>,
    opts: &Options,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let secs = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::TimeDelta::MAX / 2);
    let calibration = if opts.rate.is_none() {
        opts.calibrate
    } else {
        Duration::ZERO
    };
    let load_start = start + secs(calibration);
    let load_end = load_start + secs(opts.duration);
    let settled = secs(opts.retention) + chrono::Duration::seconds(2 * 60);
    let from = load_start + secs(opts.duration / 2) - settled;
    // The first midnight after `from`.
    let midnight = from
        .date_naive()
        .succ_opt()?
        .and_hms_opt(0, 0, 0)?
        .and_utc();
    (midnight <= load_end).then_some(midnight)
}

async fn run_on(opts: &Options, binaries: &Binaries, db: &TestDb) -> Result<Outcome, SoakError> {
    let conn = db.connect(4).await?;
    let receiver = Receiver::start(Keep::Counts).await?;
    let answers: Answers = Arc::new(Mutex::new(Vec::new()));
    for k in 0..plan::CONFIGS {
        let answers = answers.clone();
        receiver.set_route(
            &plan::path(k),
            Route::new(move |d: &Delivery<'_>| {
                let id = d.webhook_id.unwrap_or("");
                let fate = Fate::of(id);
                if fate == Fate::Delivered {
                    lock(&answers).push((id.to_owned(), chrono::Utc::now()));
                }
                fate.reply()
            }),
        );
    }

    let api_env = Env::new()
        .with("RUST_LOG", "warn")
        .with("JWT_SECRET", JWT_SECRET)
        .with("SIGNALWIRE_SIGNING_KEY", SIGNALWIRE_KEY);
    let api_addr = free_local_addr()?;
    let mut api = Proc::start(
        binaries,
        ProcSpec::api("soak-api", db.url(), api_addr, &api_env, &opts.log_dir),
    )
    .await?;
    let client = ApiClient::new(binaries, api_addr, JWT_SECRET).await?;
    for k in 0..plan::CONFIGS {
        let (status, answer) = client
            .post(
                "/api/webhooks/config",
                &plan::config_body(k, &receiver.url(&plan::path(k))),
            )
            .await?;
        if status != 201 {
            return Err(SoakError::Setup(format!(
                "create config: {status} {answer}"
            )));
        }
    }
    let worker_env = Env::new()
        .with("RUST_LOG", "warn")
        .with("RETENTION_SECS", opts.retention.as_secs().to_string())
        .with("RETENTION_INTERVAL_SECS", "60")
        .with("JOB_HISTORY_SECS", opts.job_history.as_secs().to_string());
    let mut workers = Vec::new();
    for i in 0..opts.workers {
        let env = worker_env
            .clone()
            .with("WORKER_NAME", format!("soak-worker-{i}"));
        let spec = ProcSpec::worker(
            &format!("soak-worker-{i}"),
            db.url(),
            free_local_addr()?,
            &env,
            &opts.log_dir,
        );
        workers.push(Proc::start(binaries, spec).await?);
    }
    let pids = Pids {
        api: api
            .pid()
            .ok_or_else(|| SoakError::Setup("the api is not running".into()))?,
        workers: workers.iter().filter_map(Proc::pid).collect(),
        postmaster: postmaster_pid(&conn).await?,
    };
    eprintln!(
        "soak: api on {api_addr}, {} workers, receiver on {}; logs in {}",
        workers.len(),
        receiver.addr(),
        opts.log_dir.display()
    );

    // Idle connections kept for every sender, so a busy moment does not end in closing them.
    let http = load::http_client(SENDERS.max(opts.connections), Duration::from_secs(30))
        .map_err(|e| SoakError::Setup(format!("HTTP client: {e}")))?;
    let base = format!("http://{api_addr}");
    let sender = SignalWire::new(&base, &base, SIGNALWIRE_KEY, http);
    let accepted: Arc<Mutex<Vec<i64>>> = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicU64::new(0));
    let mut ledger = Ledger::default();

    let (rate, rate_source) = match opts.rate {
        Some(rate) => (rate, RateSource::Given),
        None => {
            let source = calibrate(opts, &sender, &accepted, &next, &answers).await;
            let RateSource::Measured {
                ingest, delivered, ..
            } = source
            else {
                return Err(SoakError::Setup("calibration".into()));
            };
            let capacity = ingest.min(delivered);
            eprintln!(
                "soak: end-to-end capacity {capacity:.0}/s (ingest {ingest:.0}/s, deliveries \
                 {delivered:.0}/s); offering half"
            );
            track(&conn, &accepted, &mut ledger).await?;
            let drained = drain(&conn, opts.drain_timeout).await;
            eprintln!(
                "soak: calibration backlog {}",
                drained.map_or("NOT drained".to_owned(), |d| format!("drained in {d:.0?}"))
            );
            ((capacity / 2.0).max(1.0), source)
        }
    };

    eprintln!(
        "soak: {rate:.0} events/s for {:.1} minutes, a sample every {:?}",
        opts.duration.as_secs_f64() / 60.0,
        opts.sample_every
    );
    // Deliveries are looked up every few seconds, apart from the samples: the lookup follows
    // `parent_event_id`, and retention purges the events within minutes in a soak run.
    let tracked = Arc::new(AtomicU64::new(0));
    let stop_tracking = Arc::new(AtomicBool::new(false));
    let tracker = {
        let (conn, accepted, tracked, stop) = (
            conn.clone(),
            accepted.clone(),
            tracked.clone(),
            stop_tracking.clone(),
        );
        let mut ledger = std::mem::take(&mut ledger);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(TRACK_EVERY).await;
                let n = track(&conn, &accepted, &mut ledger).await?;
                tracked.fetch_add(n, Ordering::Relaxed);
                let rows = outbound_rows(&conn, Some(&ledger.watching)).await?;
                ledger.settle(rows);
                if accepted_backlog(&accepted) > 20_000 {
                    eprintln!("soak: matching deliveries falls behind the load");
                }
            }
            track(&conn, &accepted, &mut ledger).await?;
            let rows = outbound_rows(&conn, Some(&ledger.watching)).await?;
            ledger.settle(rows);
            Ok::<_, sea_orm::DbErr>(ledger)
        })
    };
    let mut sampler = Sampler::new(conn.clone(), pids, answers.clone());
    let mut samples = vec![sampler.take(0).await?];
    let answered = &ANSWERED;
    OVERLOADED.store(0, Ordering::Relaxed);
    let mut tracked_before = answered.load(Ordering::Relaxed);
    let load = {
        let (sender, accepted, next) = (sender.clone(), accepted.clone(), next.clone());
        tokio::spawn(load::paced(rate, opts.duration, move |_| {
            let (sender, accepted) = (sender.clone(), accepted.clone());
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move { post(&sender, &accepted, i).await }
        }))
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.sample_every,
        opts.sample_every,
    );
    while started.elapsed() + Duration::from_millis(500) < opts.duration {
        tick.tick().await;
        let now = answered.load(Ordering::Relaxed);
        let took = Instant::now();
        let sample = sampler.take(now - tracked_before).await?;
        tracked_before = now;
        eprintln!(
            "soak: {} (sampled in {:.1?})",
            report::progress_line(&sample),
            took.elapsed()
        );
        samples.push(sample);
    }
    let run = load
        .await
        .map_err(|e| SoakError::Setup(format!("load generator: {e}")))?;
    let refused = run.errors().count() as u64;
    let overloaded = OVERLOADED.load(Ordering::Relaxed);
    for example in run.error_examples(3) {
        eprintln!("soak: refused: {example}");
    }
    stop_tracking.store(true, Ordering::Relaxed);
    let ledger = tracker
        .await
        .map_err(|e| SoakError::Setup(format!("delivery tracker: {e}")))??;

    let drained_after = drain(&conn, opts.drain_timeout).await;
    eprintln!(
        "soak: queue {}",
        drained_after.map_or("NOT drained".to_owned(), |d| format!("drained in {d:.0?}"))
    );
    let rows = outbound_rows(&conn, None).await?;
    let account = ledger::account(&ledger, &rows, |id| {
        receiver.seen(id).map(|s| Received {
            arrivals: s.count,
            ok: s.answered_ok,
        })
    });
    let (postgres, postgres_settings) = postgres_facts(&conn).await?;
    for worker in &mut workers {
        let _ = worker.terminate(STOP_GRACE).await;
    }
    let _ = api.terminate(STOP_GRACE).await;
    Ok(Outcome {
        opts: opts.clone(),
        rate,
        rate_source,
        samples,
        account,
        refused,
        overloaded,
        drained_after,
        postgres,
        postgres_settings,
        api_env: api_env.with("JWT_SECRET", "(a test secret)"),
        worker_env,
    })
}

/// How often a refused source event is sent again, as a provider retries a `503`.
pub const RESENDS: u32 = 20;

/// Requests on the wire at once, at most: a request due while all are busy waits in the
/// generator. Without a bound, a stall of the api left thousands of requests in flight, each on
/// a connection of its own, and the generator's `connect()` searching a nearly exhausted
/// ephemeral port range took most of a core of the two the api and workers run on: a load
/// generator starving what it measures, and a collapse that would not recover.
pub const SENDERS: usize = 256;

static SENDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(SENDERS);
/// Requests the api answered `503 overloaded` (each was sent again after its `Retry-After`).
static OVERLOADED: AtomicU64 = AtomicU64::new(0);

/// Posts source event `i` (again after each `503`, waiting its `Retry-After`, up to
/// [`RESENDS`] times); records its inbound id when the api accepted it with one delivery.
async fn post(sender: &SignalWire, accepted: &Mutex<Vec<i64>>, i: u64) -> Result<i64, String> {
    let mut resends = 0;
    loop {
        let sending = SENDING
            .acquire()
            .await
            .map_err(|e| format!("sender closed: {e}"))?;
        let response = sender
            .send(plan::source_body(i))
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        drop(sending);
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if status == 503 && resends < RESENDS {
            OVERLOADED.fetch_add(1, Ordering::Relaxed);
            resends += 1;
            tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 30))).await;
            continue;
        }
        let processed = body["status"] == "processed" && body["deliveries"] == 1;
        return match body["eventId"].as_i64() {
            Some(id) if status == 200 && processed => {
                lock(accepted).push(id);
                ANSWERED.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
            _ => Err(format!("{status}: {body}")),
        };
    }
}

/// Measures the end-to-end capacity: a closed loop of `opts.connections` senders for
/// `opts.calibrate`; the ingest rate, and the rate of deliveries answered 2xx at the receiver
/// over the second half (when a backlog keeps the workers busy).
async fn calibrate(
    opts: &Options,
    sender: &SignalWire,
    accepted: &Arc<Mutex<Vec<i64>>>,
    next: &Arc<AtomicU64>,
    answers: &Answers,
) -> RateSource {
    eprintln!(
        "soak: measuring the end-to-end capacity for {:?} ({} connections)",
        opts.calibrate, opts.connections
    );
    lock(answers).clear();
    let half = opts.calibrate / 2;
    let counter = {
        let answers = answers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(half).await;
            let at_half = lock(&answers).len();
            let t = Instant::now();
            tokio::time::sleep(half).await;
            (lock(&answers).len() - at_half, t.elapsed())
        })
    };
    let run = {
        let (sender, accepted, next) = (sender.clone(), accepted.clone(), next.clone());
        load::closed_loop(opts.connections, opts.calibrate, move |_| {
            let (sender, accepted) = (sender.clone(), accepted.clone());
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move { post(&sender, &accepted, i).await }
        })
        .await
    };
    let (delivered, window) = counter.await.unwrap_or((0, half));
    lock(answers).clear();
    // Deliveries answered 2xx are 94% of all: count what the workers did, fates included.
    let share = 1.0 - (plan::FAILING_PCT + plan::HANGING_PCT) as f64 / 100.0;
    RateSource::Measured {
        ingest: crate::stats::rate(run.ok().count() as u64, run.elapsed),
        delivered: crate::stats::rate(delivered as u64, window) / share,
        secs: run.elapsed.as_secs_f64(),
        connections: opts.connections,
    }
}

/// Looks up the deliveries of the source events accepted since the last call, adds them to the
/// ledger and returns how many there were.
async fn track(
    conn: &DatabaseConnection,
    accepted: &Mutex<Vec<i64>>,
    ledger: &mut Ledger,
) -> Result<u64, sea_orm::DbErr> {
    let ids = std::mem::take(&mut *lock(accepted));
    if ids.is_empty() {
        return Ok(0);
    }
    let mut found: HashMap<i64, String> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(10_000) {
        let list = format!(
            "{{{}}}",
            chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                // A join on the array's elements, not `= ANY($1)`: with a parameter array the
                // planner may scan a partition and test each row against every element (10,000
                // ids against 20,000 rows kept a core busy for 35 s). No `direction` test
                // (only deliveries have a parent): with the statistics of a partition that
                // grew since its last analyze, the planner ANDed the `direction` index into
                // every probe (16 ms each, 25 s for 1,500 ids).
                "SELECT e.parent_event_id, e.message_id \
                 FROM unnest($1::bigint[]) AS p(id) \
                 JOIN webhook_events e ON e.parent_event_id = p.id",
                [list.into()],
            ))
            .await?;
        for row in rows {
            found.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        }
    }
    for id in &ids {
        match found.remove(id) {
            Some(message_id) => ledger.track(message_id),
            None => ledger.without_delivery.push(*id),
        }
    }
    Ok(ids.len() as u64)
}

/// Waits until no outbound event is pending and no delivery job is open; how long that took,
/// or `None` after `limit`.
async fn drain(conn: &DatabaseConnection, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if crate::chaos::open_work(conn).await.is_ok_and(|n| n == 0) {
            return Some(started.elapsed());
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The rows of the outbound events still in the database, by `message_id`: those of `only`,
/// or every one.
async fn outbound_rows(
    conn: &DatabaseConnection,
    only: Option<&[String]>,
) -> Result<HashMap<String, Row>, sea_orm::DbErr> {
    let columns = "e.message_id, e.status::text, e.attempts";
    let statement = match only {
        Some([]) => return Ok(HashMap::new()),
        // Joined on the array's elements, without a `direction` test, as in `track` (the
        // message ids asked for are deliveries').
        Some(ids) => Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT {columns} FROM unnest($1::text[]) AS m(id) \
                 JOIN webhook_events e ON e.message_id = m.id"
            ),
            [ids.to_vec().into()],
        ),
        None => Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT {columns} FROM webhook_events e WHERE e.direction = 'outbound'"),
        ),
    };
    let rows = conn.query_all_raw(statement).await?;
    rows.iter()
        .map(|r| {
            let attempts: i32 = r.try_get_by_index(2)?;
            Ok((
                r.try_get_by_index(0)?,
                Row {
                    status: r.try_get_by_index(1)?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// The pid of the server's postmaster (the first line of `postmaster.pid`).
async fn postmaster_pid(conn: &DatabaseConnection) -> Result<u32, SoakError> {
    let dir = scalar_text(
        conn,
        "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
    )
    .await?;
    let text = std::fs::read_to_string(PathBuf::from(&dir).join("postmaster.pid"))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| SoakError::Setup(format!("no pid in {dir}/postmaster.pid")))
}

/// The server's version, its durability settings and every setting its configuration changed.
async fn postgres_facts(
    conn: &DatabaseConnection,
) -> Result<(String, Vec<(String, String)>), sea_orm::DbErr> {
    let version = scalar_text(conn, "SELECT version()").await?;
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT name, setting || COALESCE(' ' || unit, '') FROM pg_settings \
             WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') \
                OR source IN ('configuration file', 'command line', 'environment variable') \
             ORDER BY name",
        ))
        .await?;
    let settings = rows
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    Ok((version, settings))
}

async fn scalar_text(conn: &DatabaseConnection, sql: &str) -> Result<String, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?;
    Ok(row
        .and_then(|r| r.try_get_by_index::<String>(0).ok())
        .unwrap_or_default())
}

fn accepted_backlog(accepted: &Mutex<Vec<i64>>) -> usize {
    lock(accepted).len()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn opts(minutes: u64) -> Options {
        Options {
            duration: Duration::from_secs(minutes * 60),
            rate: Some(300.0),
            calibrate: Duration::from_secs(20),
            connections: 32,
            sample_every: Duration::from_secs(30),
            retention: Duration::from_secs(120),
            job_history: Duration::from_secs(60),
            workers: 2,
            drain_timeout: Duration::from_secs(300),
            bin_dir: PathBuf::new(),
            log_dir: PathBuf::new(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map_or(DateTime::<Utc>::MIN_UTC, |t| t.to_utc())
    }

    #[test]
    fn a_run_crossing_midnight_in_its_judged_half_is_refused() {
        // The last stop's run: 23:32 for 30 minutes.
        let roll = day_roll_in_judged_half(at("2026-12-06T23:32:00Z"), &opts(30));
        assert_eq!(roll, Some(at("2026-12-07T00:00:00Z")));
    }

    #[test]
    fn a_run_whose_old_day_is_dropped_before_its_judged_half_may_start() {
        // Midnight 5 minutes in: the old day goes by minute 9, the judged half starts at 15.
        assert_eq!(
            day_roll_in_judged_half(at("2026-12-06T23:55:00Z"), &opts(30)),
            None
        );
    }

    #[test]
    fn a_run_ending_before_midnight_may_start() {
        assert_eq!(
            day_roll_in_judged_half(at("2026-12-06T23:29:00Z"), &opts(30)),
            None
        );
    }

    #[test]
    fn the_calibration_counts_only_when_it_runs() {
        let mut measured = opts(30);
        measured.rate = None;
        measured.calibrate = Duration::from_secs(120);
        let start = at("2026-12-06T23:28:30Z");
        assert_eq!(day_roll_in_judged_half(start, &opts(30)), None);
        assert!(day_roll_in_judged_half(start, &measured).is_some());
    }
}
