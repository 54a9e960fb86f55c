//! The worker runtime against a real PostgreSQL (`DATABASE_URL`): how fast jobs start, when
//! scheduled ones start, lease expiry, shutdown, health and metrics, and the `worker` binary.
//!
//! Every test gets a fresh database `wirehook_wtest_<ulid>`, dropped at the end. The engine's
//! `run_job` is observed through apalis' own bookkeeping: a job that ran ends `Done`.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgPool, Row};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use wirehook_core::engine::Engine;
use wirehook_core::http_client::{ClientConfig, DeliveryClient};
use wirehook_core::job::QUEUE;
use wirehook_core::settings::WorkerSettings;
use wirehook_testkit::db::TestDb;
use wirehook_testkit::init_logs;
use wirehook_testkit::receiver::{Receiver, Reply};
use wirehook_testkit::replica::{self, Replica};
use wirehook_worker::runtime;

/// Prefix of the tests' databases: `wirehook_wtest_<ulid>`.
const DB_PREFIX: &str = "wirehook_wtest";

/// A fresh database with every migration applied (tables and the apalis schema), and a pool
/// of 12 on it.
async fn migrated() -> (TestDb, DatabaseConnection) {
    let test_db = TestDb::from_env(DB_PREFIX).await.expect("test database");
    let db = test_db.connect_migrated(12).await.expect("migrate");
    (test_db, db)
}

/// Settings for `db` with the given overrides; metrics on an ephemeral port.
fn settings(db: &TestDb, overrides: &[(&str, &str)]) -> WorkerSettings {
    let mut vars = vec![
        ("WORKER_CONCURRENCY", "8"),
        ("WORKER_SHUTDOWN_GRACE_SECS", "5"),
    ];
    vars.extend_from_slice(overrides);
    replica::settings(db.url(), &vars).expect("valid test settings")
}

fn engine(db: &DatabaseConnection) -> Arc<Engine> {
    let client = DeliveryClient::new(ClientConfig {
        timeout: Duration::from_secs(2),
        allow_private_targets: true,
        user_agent: "wirehook-tests".into(),
    })
    .expect("client");
    Arc::new(Engine::new(
        db.clone(),
        client,
        Arc::new(wirehook_core::secrets::Keyring::development()),
    ))
}

/// Starts `run` with [`engine`] and waits until its apalis worker has registered and listens.
async fn start(db: &DatabaseConnection, settings: WorkerSettings) -> Replica {
    let replica = Replica::spawn(engine(db), settings);
    replica
        .wait_ready(Duration::from_secs(10))
        .await
        .expect("the replica registers and listens");
    replica
}

/// Sends the shutdown signal; `run` must return `Ok` within 30 s. Returns how long it took.
async fn stop(replica: Replica) -> Duration {
    replica
        .stop(Duration::from_secs(30))
        .await
        .expect("run returns Ok after shutdown")
}

fn pool(db: &DatabaseConnection) -> PgPool {
    db.get_postgres_connection_pool().clone()
}

/// Polls `check` every 5 ms until it holds; panics after `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Inserts a delivery job as the api does (plain INSERT; the table's trigger NOTIFYs), due
/// `delay_ms` from now. Returns its id.
async fn insert_job(pool: &PgPool, event_id: i64, delay_ms: i64) -> String {
    let id = ulid::Ulid::generate().to_string();
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
         VALUES ($1, $2, convert_to($3, 'UTF8'), 'Pending', 0, 5, \
                 now() + $4 * interval '1 millisecond', 0)",
    )
    .bind(&id)
    .bind(QUEUE)
    .bind(format!(r#"{{"v":1,"event_id":{event_id}}}"#))
    .bind(delay_ms as f64)
    .execute(pool)
    .await
    .expect("insert job");
    id
}

/// A job row's bookkeeping, as apalis keeps it.
#[derive(Debug)]
struct JobRow {
    status: String,
    run_at: DateTime<Utc>,
    lock_at: Option<DateTime<Utc>>,
    done_at: Option<DateTime<Utc>>,
    lock_by: Option<String>,
}

async fn job(pool: &PgPool, id: &str) -> JobRow {
    let row = sqlx::query(
        "SELECT status, run_at, lock_at, done_at, lock_by FROM apalis.jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("job row");
    JobRow {
        status: row.get("status"),
        run_at: row.get("run_at"),
        lock_at: row.get("lock_at"),
        done_at: row.get("done_at"),
        lock_by: row.get("lock_by"),
    }
}

/// Waits until the job is `Done` and returns its row.
async fn done(pool: &PgPool, id: &str, limit: Duration) -> JobRow {
    wait_for(limit, "the job to be Done", || async {
        job(pool, id).await.status == "Done"
    })
    .await;
    job(pool, id).await
}

fn ms(d: chrono::TimeDelta) -> i64 {
    d.num_milliseconds()
}

/// A poll interval no test waits out: a job a test sees done before a replica's first poll
/// after the one it makes at start was started by something else.
const NO_POLL: &[(&str, &str)] = &[
    ("WORKER_POLL_INTERVAL_MS", "60000"),
    ("WORKER_HEARTBEAT_SECS", "300"),
];

/// How long after a replica with [`NO_POLL`] was started its jobs must be done: before its first
/// poll after the one it makes at start (60 s) and its first heartbeat (300 s), either of which
/// would start any job due.
const BEFORE_THE_POLL: Duration = Duration::from_secs(50);

#[tokio::test]
async fn a_new_job_starts_at_once_through_listen_notify() {
    init_logs();
    let (test_db, db) = migrated().await;
    let started = Instant::now();
    let replica = start(&db, settings(&test_db, NO_POLL)).await;
    let pool = pool(&db);

    let mut observed = Vec::new();
    for event_id in 1..=5 {
        let inserted = Instant::now();
        let id = insert_job(&pool, event_id, 0).await;
        // Done before any poll could have started it: only its notification did. (How fast,
        // ~10 ms, is a benchmark figure, not a bound a test on a shared machine can hold.)
        let left = BEFORE_THE_POLL.saturating_sub(started.elapsed());
        let row = done(&pool, &id, left).await;
        let pickup = ms(row.lock_at.expect("locked") - row.run_at);
        let finish = ms(row.done_at.expect("done") - row.run_at);
        assert_eq!(row.lock_by.as_deref(), Some(replica.name()));
        observed.push((pickup, finish, inserted.elapsed().as_millis()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "pickup latency (run_at → locked, run_at → Done in ms by the database clock; \
         INSERT → Done seen by the test in ms): {observed:?}"
    );

    stop(replica).await;
}

#[tokio::test]
async fn a_job_enqueued_late_in_a_long_transaction_still_wakes_the_replica() {
    init_logs();
    let (test_db, db) = migrated().await;
    let started = Instant::now();
    let replica = start(&db, settings(&test_db, NO_POLL)).await;
    let pool = pool(&db);
    let config_id: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_configs (name, url, secret, event_types, status, retry_config) \
         VALUES ('late', 'http://127.0.0.1:1/', 'webhooksecret123', '[\"call.completed\"]', \
                 'active', '{\"maxAttempts\":1,\"initialDelay\":1,\"maxDelay\":1,\"backoffFactor\":1}') \
         RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("insert config");

    // apalis notifies only jobs with run_at <= now(), and now() is the transaction's start.
    let txn = sea_orm::TransactionTrait::begin(&db).await.expect("begin");
    txn.execute_unprepared("SELECT pg_sleep(0.2)")
        .await
        .expect("sleep");
    let enqueued = wirehook_core::queue::enqueue(
        &txn,
        vec![wirehook_core::queue::NewDelivery {
            config_id: entity::ConfigId(config_id),
            source: entity::Source::Platform,
            event_type: "call.completed".into(),
            payload: serde_json::json!({}),
            parent_event_id: None,
        }],
    )
    .await
    .expect("enqueue");
    txn.commit().await.expect("commit");
    let job_id: String = sqlx::query_scalar(
        "SELECT id FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb->>'event_id' = $1",
    )
    .bind(enqueued[0].event_id.to_string())
    .fetch_one(&pool)
    .await
    .expect("the job");
    // Done before any poll could have started it: only its notification did.
    done(
        &pool,
        &job_id,
        BEFORE_THE_POLL.saturating_sub(started.elapsed()),
    )
    .await;

    stop(replica).await;
}

#[tokio::test]
async fn a_scheduled_job_is_started_by_the_poll_once_due_never_before() {
    init_logs();
    let (test_db, db) = migrated().await;
    // Polls every 500 ms and beats every 300 s. A job inserted for later is not notified, so
    // one done well before the first heartbeat was started by a poll.
    let replica = start(&db, settings(&test_db, &[("WORKER_HEARTBEAT_SECS", "300")])).await;
    let pool = pool(&db);

    let id = insert_job(&pool, 7, 2000).await;
    let row = done(&pool, &id, Duration::from_secs(60)).await;
    let locked = row.lock_at.expect("locked");
    eprintln!(
        "scheduled job: locked {} ms and Done {} ms after its due time",
        ms(locked - row.run_at),
        ms(row.done_at.expect("done") - row.run_at)
    );
    // By the database's clock, the one that decides when a job is due.
    assert!(
        locked > row.run_at,
        "claimed at {locked}, due at {}",
        row.run_at
    );

    stop(replica).await;
}

#[tokio::test]
async fn shutdown_makes_run_return_ok_without_waiting_for_a_poll_or_the_grace_period() {
    init_logs();
    let (test_db, db) = migrated().await;
    let mut vars = NO_POLL.to_vec();
    vars.push(("WORKER_SHUTDOWN_GRACE_SECS", "600"));
    let replica = start(&db, settings(&test_db, &vars)).await;
    let pool = pool(&db);
    let id = insert_job(&pool, 3, 0).await;
    done(&pool, &id, Duration::from_secs(30)).await;

    // `stop` waits 30 s at most: far less than the grace period, the poll interval or the
    // heartbeat, any of which a stuck shutdown would wait for.
    let took = stop(replica).await;
    eprintln!("run returned {took:?} after the shutdown signal");

    // A stopped replica claims nothing more.
    let later = insert_job(&pool, 4, 0).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(job(&pool, &later).await.status, "Pending");
}

#[tokio::test]
async fn jobs_of_a_dead_replica_run_again_once_its_lease_expires() {
    init_logs();
    let (test_db, db) = migrated().await;
    let pool = pool(&db);
    // A replica that claimed a job and was SIGKILLed right after its last heartbeat.
    let last_seen: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
         VALUES ('dead-replica', $1, 'PgStorage', '', now()) RETURNING last_seen",
    )
    .bind(QUEUE)
    .fetch_one(&pool)
    .await
    .expect("insert dead worker");
    let id = insert_job(&pool, 9, 0).await;
    sqlx::query(
        "UPDATE apalis.jobs SET status = 'Running', lock_by = 'dead-replica', lock_at = now() \
         WHERE id = $1",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .expect("claim job for the dead worker");

    // 1 s heartbeat: a 2 s lease.
    let settings = settings(&test_db, &[("WORKER_HEARTBEAT_SECS", "1")]);
    assert_eq!(runtime::lease(&settings), Duration::from_secs(2));
    let replica = start(&db, settings).await;
    let row = done(&pool, &id, Duration::from_secs(30)).await;
    let claimed = row.lock_at.expect("locked");
    eprintln!(
        "orphaned job claimed again {} ms after its replica's last heartbeat (lease 2 s)",
        ms(claimed - last_seen)
    );
    assert_eq!(row.lock_by.as_deref(), Some(replica.name()));
    // By the database's clock, the one leases are checked against.
    assert!(
        claimed - last_seen >= chrono::TimeDelta::seconds(2),
        "claimed again at {claimed}, before the lease from {last_seen} expired"
    );

    stop(replica).await;
}

#[tokio::test]
async fn a_running_replica_keeps_its_lease_fresh() {
    init_logs();
    let (test_db, db) = migrated().await;
    let pool = pool(&db);
    let replica = start(&db, settings(&test_db, &[("WORKER_HEARTBEAT_SECS", "1")])).await;
    let last_seen = || async {
        sqlx::query_scalar::<_, DateTime<Utc>>("SELECT last_seen FROM apalis.workers WHERE id = $1")
            .bind(replica.name())
            .fetch_one(&pool)
            .await
            .expect("worker row")
    };
    // Renewed on every heartbeat (1 s here): never, by the database's clock, a lease (2 s)
    // after the renewal before, over three renewals.
    let lease = chrono::TimeDelta::seconds(2);
    let mut seen = vec![last_seen().await];
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() <= 3 {
        assert!(Instant::now() < deadline, "lease renewals seen: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = last_seen().await;
        if seen.last().is_some_and(|before| now != *before) {
            seen.push(now);
        }
    }
    for pair in seen.windows(2) {
        assert!(
            pair[1] - pair[0] < lease,
            "the lease lapsed: renewals {seen:?}"
        );
    }
    stop(replica).await;
}

#[tokio::test]
async fn a_failed_apalis_worker_is_replaced_and_the_replica_keeps_delivering() {
    init_logs();
    let (test_db, db) = migrated().await;
    let pool = pool(&db);
    let replica = start(
        &db,
        settings(&test_db, &[("WORKER_POLL_INTERVAL_MS", "100")]),
    )
    .await;
    // A row apalis cannot read (its id is not a ULID) makes every fetch fail.
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
         VALUES ('not-a-ulid', $1, convert_to('{}', 'UTF8'), 'Pending', 0, 5, now(), 0)",
    )
    .bind(QUEUE)
    .execute(&pool)
    .await
    .expect("insert unreadable job");
    let replacement = format!("{}~1", replica.name());
    wait_for(
        Duration::from_secs(10),
        "a replacement apalis worker",
        || async {
            sqlx::query("SELECT 1 FROM apalis.workers WHERE id = $1")
                .bind(&replacement)
                .fetch_optional(&pool)
                .await
                .expect("query workers")
                .is_some()
        },
    )
    .await;
    sqlx::query("DELETE FROM apalis.jobs WHERE id = 'not-a-ulid'")
        .execute(&pool)
        .await
        .expect("delete unreadable job");

    let id = insert_job(&pool, 13, 0).await;
    let row = done(&pool, &id, Duration::from_secs(15)).await;
    let by = row.lock_by.expect("locked");
    assert!(by.starts_with(&format!("{}~", replica.name())), "{by}");
    stop(replica).await;
}

#[tokio::test]
async fn an_unreadable_job_is_killed_and_the_replica_carries_on() {
    init_logs();
    let (test_db, db) = migrated().await;
    let pool = pool(&db);
    let replica = start(&db, settings(&test_db, &[])).await;
    let bad = ulid::Ulid::generate().to_string();
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
         VALUES ($1, $2, convert_to('{\"v\":1}', 'UTF8'), 'Pending', 0, 5, now(), 0)",
    )
    .bind(&bad)
    .bind(QUEUE)
    .execute(&pool)
    .await
    .expect("insert job without event_id");
    wait_for(
        Duration::from_secs(5),
        "the unreadable job to be Killed",
        || async { job(&pool, &bad).await.status == "Killed" },
    )
    .await;

    let good = insert_job(&pool, 19, 0).await;
    let row = done(&pool, &good, Duration::from_secs(5)).await;
    assert_eq!(row.lock_by.as_deref(), Some(replica.name()));
    stop(replica).await;
}

#[tokio::test]
async fn deliveries_continue_after_the_database_drops_every_connection() {
    init_logs();
    let (test_db, db) = migrated().await;
    let replica = start(&db, settings(&test_db, &[])).await;
    let admin = wirehook_testkit::db::connect(test_db.admin_url(), 1)
        .await
        .expect("connect admin");
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            test_db.name()
        ))
        .await
        .expect("terminate connections");
    admin.close().await.ok();

    let observer = test_db.connect(12).await.expect("connect");
    let pool = pool(&observer);
    let id = insert_job(&pool, 17, 0).await;
    let row = done(&pool, &id, Duration::from_secs(15)).await;
    assert!(row.lock_by.is_some());
    stop(replica).await;
}

#[tokio::test]
async fn jobs_left_by_an_earlier_process_with_the_same_name_are_released_at_start() {
    init_logs();
    let (test_db, db) = migrated().await;
    let pool = pool(&db);
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
         VALUES ('pod-0', $1, 'PgStorage', '', now())",
    )
    .bind(QUEUE)
    .execute(&pool)
    .await
    .expect("insert worker");
    let id = insert_job(&pool, 11, 0).await;
    sqlx::query("UPDATE apalis.jobs SET status = 'Running', lock_by = 'pod-0' WHERE id = $1")
        .bind(&id)
        .execute(&pool)
        .await
        .expect("claim");

    let replica = start(
        &db,
        settings(
            &test_db,
            &[("WORKER_NAME", "pod-0"), ("WORKER_HEARTBEAT_SECS", "30")],
        ),
    )
    .await;
    // Without the release, the fresh heartbeat of `pod-0` would keep the job stuck forever.
    done(&pool, &id, Duration::from_secs(3)).await;
    stop(replica).await;
}

#[tokio::test]
async fn healthz_and_metrics_are_served_on_metrics_addr() {
    init_logs();
    let (test_db, db) = migrated().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr").port()
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let addr_text = addr.to_string();
    let replica = start(
        &db,
        settings(&test_db, &[("METRICS_ADDR", addr_text.as_str())]),
    )
    .await;
    let pool = pool(&db);
    let id = insert_job(&pool, 5, 0).await;
    done(&pool, &id, Duration::from_secs(5)).await;

    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");

    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("body");
    assert!(text.contains("wirehook_worker_in_flight"), "{text}");
    assert!(
        text.contains(r#"wirehook_worker_jobs_total{outcome="ok"}"#),
        "{text}"
    );

    stop(replica).await;
}

#[tokio::test]
async fn run_fails_when_metrics_addr_is_taken() {
    init_logs();
    let (test_db, db) = migrated().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let settings = settings(&test_db, &[("METRICS_ADDR", addr.as_str())]);
    let result = runtime::run(engine(&db), &settings, std::future::pending()).await;
    let error = result.expect_err("port in use");
    assert!(
        error
            .to_string()
            .starts_with("cannot listen on METRICS_ADDR"),
        "{error}"
    );
}

// ---- the `worker` binary ----

fn worker_binary(vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("WORKER_NAME")
        .env_remove("RUST_LOG")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("WIREHOOK_ENV", "development")
        .stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn without_wirehook_env_the_binary_refuses_to_start_without_an_encryption_key() {
    let output = worker_binary(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")])
        .env_remove("WIREHOOK_ENV")
        .env_remove("WIREHOOK_ENCRYPTION_KEY")
        .output()
        .expect("run worker");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("worker: WIREHOOK_ENCRYPTION_KEY is invalid: required in production"),
        "{stderr}"
    );
}

#[test]
fn the_binary_exits_1_with_one_line_when_database_url_is_missing() {
    let output = worker_binary(&[]).output().expect("run worker");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr_of(&output), "worker: DATABASE_URL is not set\n");
}

#[test]
fn the_binary_exits_1_with_one_line_on_a_bad_setting() {
    let output = worker_binary(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("WORKER_CONCURRENCY", "0"),
    ])
    .output()
    .expect("run worker");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_of(&output),
        "worker: WORKER_CONCURRENCY is invalid: must be between 1 and 1024\n"
    );
}

#[tokio::test]
async fn the_binary_refuses_to_start_on_an_unmigrated_database() {
    let test_db = TestDb::from_env(DB_PREFIX).await.expect("test database");
    let output = worker_binary(&[("DATABASE_URL", test_db.url())])
        .output()
        .expect("run worker");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("worker: "), "{stderr}");
    assert!(stderr.contains("run `api migrate` first"), "{stderr}");
}

#[tokio::test]
async fn the_binary_delivers_and_exits_0_on_sigterm() {
    let (test_db, db) = migrated().await;
    let pool = pool(&db);
    let mut child = worker_binary(&[
        ("DATABASE_URL", test_db.url()),
        ("WORKER_NAME", "binary-test"),
        ("WORKER_CONCURRENCY", "4"),
    ])
    .stderr(Stdio::null())
    .spawn()
    .expect("start worker");
    wait_for(
        Duration::from_secs(20),
        "the worker to register",
        || async {
            sqlx::query("SELECT 1 FROM apalis.workers WHERE id = 'binary-test'")
                .fetch_optional(&pool)
                .await
                .expect("query")
                .is_some()
        },
    )
    .await;
    let id = insert_job(&pool, 21, 0).await;
    done(&pool, &id, Duration::from_secs(5)).await;

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("worker did not exit within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    eprintln!("worker exited {:?} after SIGTERM", stopped.elapsed());
}

// ---- two `worker` processes, one killed ----

/// Kills the child on drop, so a failing test leaves no worker behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_sigkilled_worker_process_loses_no_delivery() {
    init_logs();
    let (test_db, db) = migrated().await;
    let pool = pool(&db);
    // Answers 200 after 300 ms, so that deliveries are in flight when a replica is killed.
    let receiver = Receiver::always(Reply::Hang(Duration::from_millis(300)))
        .await
        .expect("receiver");
    let config_id: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_configs (name, url, secret, event_types, status, retry_config) \
         VALUES ('kill test', $1, 'webhooksecret123', '[\"call.completed\"]', 'active', \
                 '{\"maxAttempts\":5,\"initialDelay\":1,\"maxDelay\":2,\"backoffFactor\":2}') \
         RETURNING id",
    )
    .bind(receiver.url("/hook"))
    .fetch_one(&pool)
    .await
    .expect("insert config");

    // Two replicas with a 1 s heartbeat (2 s lease), 4 deliveries in flight each.
    let start = |name: &'static str| {
        Child(
            worker_binary(&[
                ("DATABASE_URL", test_db.url()),
                ("WORKER_NAME", name),
                ("WORKER_CONCURRENCY", "4"),
                ("WORKER_HEARTBEAT_SECS", "1"),
                ("WORKER_POLL_INTERVAL_MS", "200"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker"),
        )
    };
    let mut victim = start("replica-a");
    let _survivor = start("replica-b");
    for name in ["replica-a", "replica-b"] {
        wait_for(
            Duration::from_secs(20),
            "both workers to register",
            || async {
                sqlx::query("SELECT 1 FROM apalis.workers WHERE id = $1")
                    .bind(name)
                    .fetch_optional(&pool)
                    .await
                    .expect("query workers")
                    .is_some()
            },
        )
        .await;
    }

    // 40 deliveries through the one enqueue path the api uses, one call (so one job) each, as
    // 40 provider webhooks that each fan out to one configuration would be.
    let txn = sea_orm::TransactionTrait::begin(&db).await.expect("begin");
    let mut enqueued = Vec::new();
    for n in 0..40 {
        let delivery = wirehook_core::queue::NewDelivery {
            config_id: entity::ConfigId(config_id),
            source: entity::Source::Platform,
            event_type: "call.completed".into(),
            payload: serde_json::json!({ "callId": format!("call-{n}") }),
            parent_event_id: None,
        };
        enqueued.extend(
            wirehook_core::queue::enqueue(&txn, vec![delivery])
                .await
                .expect("enqueue"),
        );
    }
    txn.commit().await.expect("commit");

    // Kill replica A while it holds deliveries in flight.
    wait_for(
        Duration::from_secs(20),
        "replica A to hold running jobs",
        || async {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM apalis.jobs WHERE lock_by = 'replica-a' AND status = 'Running'",
            )
            .fetch_one(&pool)
            .await
            .expect("count held jobs");
            held > 0
        },
    )
    .await;
    victim.0.kill().expect("SIGKILL replica A");
    victim.0.wait().expect("reap replica A");
    let killed = Instant::now();
    let orphaned: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM apalis.jobs WHERE lock_by = 'replica-a' AND status = 'Running'",
    )
    .fetch_all(&pool)
    .await
    .expect("jobs left by replica A");
    assert!(!orphaned.is_empty(), "replica A died holding nothing");

    // Every event ends delivered, the orphans by replica B.
    wait_for(
        Duration::from_secs(60),
        "every event to be delivered",
        || async {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM webhook_events WHERE status <> 'delivered'",
            )
            .fetch_one(&pool)
            .await
            .expect("count undelivered");
            open == 0
        },
    )
    .await;
    eprintln!(
        "{} jobs orphaned by SIGKILL; all 40 delivered {:?} after the kill",
        orphaned.len(),
        killed.elapsed()
    );
    for id in &orphaned {
        // The event may be recorded before replica B's batched ack marks the job Done.
        let row = done(&pool, id, Duration::from_secs(10)).await;
        assert_eq!(
            row.lock_by.as_deref(),
            Some("replica-b"),
            "orphaned job {id}"
        );
    }
    // Every webhook-id received, duplicates included.
    let seen: Vec<String> = receiver
        .received()
        .into_iter()
        .map(|a| a.webhook_id.unwrap_or_else(|| "missing webhook-id".into()))
        .collect();
    for e in &enqueued {
        assert!(
            seen.contains(&e.message_id),
            "{} was never received",
            e.message_id
        );
    }
    // At least once: an attempt cut off by the kill is sent again with the same webhook-id.
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        enqueued.len(),
        "unexpected webhook-ids: {seen:?}"
    );
}

#[tokio::test]
async fn a_replica_leading_maintenance_does_not_block_migrations() {
    init_logs();
    let (test_db, db) = migrated().await;
    let replica = start(&db, settings(&test_db, &[("QUEUE_SAMPLE_SECS", "1")])).await;
    let pool = pool(&db);
    wait_for(Duration::from_secs(10), "the maintenance lead", || async {
        sqlx::query(
            "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
        )
        .fetch_optional(&pool)
        .await
        .expect("query pg_locks")
        .is_some()
    })
    .await;
    let migrated = tokio::time::timeout(Duration::from_secs(10), migration::migrate(&db)).await;
    assert!(
        matches!(migrated, Ok(Ok(()))),
        "api migrate must not wait for the maintenance leader: {migrated:?}"
    );
    stop(replica).await;
}
