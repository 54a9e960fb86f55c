//! Scenarios 8 and 9: the history partitioned by day.
//!
//! **Retention** ([`retention`]): `days` days × `per_day` events (half outbound, each of those
//! with one attempt) in their day partitions, then, on the oldest day: the old row-by-row purge
//! (`DELETE … LIMIT 1000` in a loop, the day's attempts with each batch, as the foreign key's
//! cascade did) inside one transaction that is rolled back, and then one real retention pass
//! (`retention::purge`), which drops that day. Each is timed and its WAL measured
//! (`pg_current_wal_insert_lsn()` before and after, after a `CHECKPOINT`, so both pay their
//! full-page images alike). The rolled-back DELETE writes the same WAL records as the committed
//! one but not its commits' fsyncs (the old purge committed every 1,000 events), and the dead
//! rows it would leave to vacuum (more WAL) are not counted: the DELETE's figures are its floor.
//!
//! **Migration in place** ([`migration`]): a database filled by the schema before
//! partitioning (`wirehook_testkit::legacy`, `rows` events), migrated by the real `api migrate`
//! while a reader probes the table every 5 ms over its own connection; the longest probe is
//! the downtime writers and readers saw. Every row, id and message id is compared before and
//! after.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use wirehook_testkit::db::TestDb;
use wirehook_testkit::legacy;

use super::{BenchResult, Context, DB_PREFIX};

/// What the retention scenario measured.
#[derive(Debug, Clone)]
pub struct RetentionRun {
    /// Days filled.
    pub days: u32,
    /// Events per day.
    pub per_day: u64,
    /// Time to fill them, s.
    pub fill_secs: f64,
    /// Events of the oldest day (what both removals remove).
    pub day_events: u64,
    /// The old row-by-row DELETE of that day: time (s) and WAL (bytes).
    pub delete_secs: f64,
    pub delete_wal: i64,
    /// The retention pass that drops it: time (s) and WAL (bytes).
    pub drop_secs: f64,
    pub drop_wal: i64,
    /// Events the pass removed.
    pub dropped: u64,
}

/// Runs the retention scenario.
pub async fn retention(ctx: &Context) -> BenchResult<RetentionRun> {
    let (days, per_day) = (
        ctx.scale.retention_days.max(2),
        ctx.scale.retention_per_day.max(10),
    );
    let database = TestDb::create(&ctx.admin_url, DB_PREFIX).await?;
    let db = database.connect_migrated(2).await?;
    db.execute_unprepared(
        "INSERT INTO webhook_configs (name, url, secret, event_types, status, retry_config) \
         VALUES ('bench', 'http://127.0.0.1:9/hook', 'x', '[\"call.completed\"]', 'active', \
                 '{\"maxAttempts\": 5, \"initialDelay\": 30, \"maxDelay\": 3600, \"backoffFactor\": 2}')",
    )
    .await?;
    let started = Instant::now();
    for day in (1..=days).rev() {
        fill_day(&db, day, per_day).await?;
    }
    db.execute_unprepared("VACUUM ANALYZE webhook_events, webhook_attempts")
        .await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let day_events: i64 = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM webhook_events \
             WHERE created_at < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' \
                               - interval '{}' day",
            days - 1
        ),
    )
    .await?;

    // The old purge of the oldest day, rolled back.
    db.execute_unprepared("CHECKPOINT").await?;
    let conn = database.connect(1).await?;
    let lsn = wal_lsn(&conn).await?;
    let started = Instant::now();
    conn.execute_unprepared("BEGIN").await?;
    let cutoff = format!(
        "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '{}' day",
        days - 1
    );
    loop {
        let deleted: i64 = scalar(
            &conn,
            &format!(
                "WITH gone AS ( \
                   DELETE FROM webhook_events WHERE id IN ( \
                     SELECT id FROM webhook_events \
                     WHERE created_at < {cutoff} AND status <> 'pending' \
                     ORDER BY created_at, id LIMIT 1000) \
                   RETURNING id), \
                 attempts AS (DELETE FROM webhook_attempts WHERE event_id IN (SELECT id FROM gone)) \
                 SELECT count(*) FROM gone"
            ),
        )
        .await?;
        if deleted < 1000 {
            break;
        }
    }
    let delete_secs = started.elapsed().as_secs_f64();
    let delete_wal = wal_lsn(&conn).await? - lsn;
    conn.execute_unprepared("ROLLBACK").await?;
    conn.close().await.ok();

    // One retention pass: the oldest day's end is older than `days - 1` days.
    db.execute_unprepared("CHECKPOINT").await?;
    let lsn = wal_lsn(&db).await?;
    let started = Instant::now();
    let purged =
        wirehook_core::retention::purge(&db, Duration::from_secs(u64::from(days - 1) * 86_400))
            .await?;
    let drop_secs = started.elapsed().as_secs_f64();
    let drop_wal = wal_lsn(&db).await? - lsn;
    db.close().await.ok();
    database.drop_now().await?;
    Ok(RetentionRun {
        days,
        per_day,
        fill_secs,
        day_events: u64::try_from(day_events).unwrap_or(0),
        delete_secs,
        delete_wal,
        drop_secs,
        drop_wal,
        dropped: purged.events,
    })
}

/// `per_day` events created `days_ago` days ago (spread over that UTC day), half of them
/// outbound with one attempt each, all in a final state.
async fn fill_day(db: &DatabaseConnection, days_ago: u32, per_day: u64) -> BenchResult<()> {
    let step = 86_399.0 / per_day as f64;
    db.execute_unprepared(&format!(
        "SELECT webhook_history_ensure_days(d, d) FROM (SELECT \
           (now() AT TIME ZONE 'UTC')::date - {days_ago} AS d) AS x; \
         WITH e AS ( \
           INSERT INTO webhook_events (id, message_id, direction, source, event_type, payload, \
             status, attempts, webhook_config_id, client_ip, created_at, updated_at) \
           SELECT webhook_event_id(t), 'msg_r' || {days_ago} || '_' || g, \
             CASE WHEN g % 2 = 0 THEN 'outbound' ELSE 'inbound' END, \
             CASE WHEN g % 2 = 0 THEN '11wire' ELSE 'signalwire' END, 'call.completed', \
             jsonb_build_object('callId', 'call-' || g, 'status', 'completed'), \
             CASE WHEN g % 2 = 0 THEN 'delivered' ELSE 'processed' END, \
             CASE WHEN g % 2 = 0 THEN 1 ELSE 0 END, \
             CASE WHEN g % 2 = 0 THEN (SELECT min(id) FROM webhook_configs) END, \
             CASE WHEN g % 2 = 1 THEN '127.0.0.1' END, t, t \
           FROM generate_series(1, {per_day}) AS g, \
             LATERAL (SELECT ((now() AT TIME ZONE 'UTC')::date - {days_ago})::timestamp \
                             AT TIME ZONE 'UTC' + make_interval(secs => g * {step})) AS c(t) \
           RETURNING id, direction, created_at) \
         INSERT INTO webhook_attempts (event_id, attempt, request_headers, status_code, \
           response_headers, response_body, duration_ms, created_at) \
         SELECT id, 1, '{{\"content-type\": \"application/json\"}}', 200, \
           '{{\"content-type\": \"text/plain\"}}', 'ok', 12, created_at \
         FROM e WHERE direction = 'outbound'"
    ))
    .await?;
    Ok(())
}

/// What the in-place migration measured.
#[derive(Debug, Clone)]
pub struct MigrationRun {
    /// Events the old schema held.
    pub rows: i64,
    /// Time to fill them, s.
    pub fill_secs: f64,
    /// The whole `migrate` run, s (the bound check scans while writers go on).
    pub migrate_secs: f64,
    /// The longest probe of the table while it ran, ms: the downtime.
    pub longest_probe_ms: f64,
    /// Probes made.
    pub probes: u64,
    /// Whether every row, id, message id and attempt survived, and the history total.
    pub intact: bool,
}

/// Runs the in-place migration scenario at `rows` events.
pub async fn migration(ctx: &Context) -> BenchResult<MigrationRun> {
    let rows = ctx.scale.migrate_rows.max(100);
    let database = TestDb::create(&ctx.admin_url, DB_PREFIX).await?;
    let db = database.connect(2).await?;
    legacy::migrate_before_partitioning(&db).await?;
    let started = Instant::now();
    legacy::fill(&db, i64::try_from(rows).unwrap_or(i64::MAX)).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let before = legacy::fingerprint(&db).await?;

    let probe_db = database.connect(1).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut longest, mut probes) = (Duration::ZERO, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let probed = probe_db
                    .query_one_raw(Statement::from_string(
                        DbBackend::Postgres,
                        "SELECT id FROM webhook_events WHERE id = 1".to_owned(),
                    ))
                    .await;
                if probed.is_ok() {
                    longest = longest.max(sent.elapsed());
                    probes += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            probe_db.close().await.ok();
            (longest, probes)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let migrated = ctx.binaries.migrate(database.url()).await;
    let migrate_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (longest, probes) = prober.await?;
    migrated?;
    let after = legacy::fingerprint(&db).await?;
    db.close().await.ok();
    database.drop_now().await?;
    Ok(MigrationRun {
        rows: before.events,
        fill_secs,
        migrate_secs,
        longest_probe_ms: longest.as_secs_f64() * 1000.0,
        probes,
        intact: after == before,
    })
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> BenchResult<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?
        .ok_or("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

async fn wal_lsn(db: &DatabaseConnection) -> BenchResult<i64> {
    scalar(
        db,
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
    )
    .await
}
