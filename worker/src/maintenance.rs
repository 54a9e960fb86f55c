//! Work one replica does for all: sampling the queue and table gauges, folding the history
//! counts, deleting finished jobs, sweeping parked deliveries and ordered keys, and purging old
//! events.
//!
//! The replica holding a PostgreSQL advisory lock on its own connection is the leader; when it
//! dies its connection closes, the lock is freed and another replica takes over on its next tick.

use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Connection, PgConnection, PgPool};

use wirehook_core::metrics::{
    JOBS_DELETED_TOTAL, ORDERED_BLOCKED_KEYS, ORDERED_OLDEST_BLOCKED_AGE, ORDERED_SWEPT_TOTAL,
    PARKED_SWEPT_TOTAL, PARTITION_DAYS_AHEAD, PURGED_TOTAL, QUEUE_OLDEST_AGE, QUEUE_PENDING,
    RETENTION_DAYS_HELD, TABLE_BYTES, TABLE_ROWS,
};
use wirehook_core::retention::purge;
use wirehook_core::{partitions, queue};

/// Advisory lock key of the maintenance leader: "wirehool" in ASCII, one above the migration
/// lock ("wirehook"), which a leader holding it for its whole life would otherwise block.
const LEADER_LOCK: i64 = 0x7769_7265_686f_6f6c;

/// Settings of [`run`].
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// How often the leader samples the queue gauges and folds the history counts.
    pub sample_every: Duration,
    /// Age past which final-state events are purged; `None` keeps everything.
    pub retention: Option<Duration>,
    /// How often the leader purges.
    pub purge_every: Duration,
    /// How long finished jobs stay in `apalis.jobs` (`JOB_HISTORY_SECS`).
    pub job_history: Duration,
}

/// Runs until dropped: tries to become the leader, then samples and purges on schedule.
pub async fn run(pool: PgPool, db: sea_orm::DatabaseConnection, schedule: Schedule) {
    let mut leader: Option<PgConnection> = None;
    let mut last_purge: Option<Instant> = None;
    let mut tick = tokio::time::interval(schedule.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if leader.is_none() {
            leader = try_lead(&pool).await;
            if leader.is_some() {
                tracing::info!("this replica samples the queue and runs retention");
            }
        }
        let Some(conn) = leader.as_mut() else {
            continue;
        };
        if let Err(error) = sample(conn).await {
            tracing::warn!(%error, "queue sampling failed; giving up the maintenance lead");
            leader = None;
            continue;
        }
        if let Err(error) = fold_counts(conn).await {
            tracing::warn!(%error, "folding the history counts failed");
        }
        match queue::finished::forget(conn, schedule.job_history).await {
            Ok(n) => metrics::counter!(JOBS_DELETED_TOTAL).increment(n),
            Err(error) => tracing::warn!(%error, "deleting finished jobs failed"),
        }
        match queue::parked::sweep(&db).await {
            Ok(swept) => {
                metrics::counter!(PARKED_SWEPT_TOTAL, "action" => "woken").increment(swept.woken);
                metrics::counter!(PARKED_SWEPT_TOTAL, "action" => "cancelled")
                    .increment(swept.cancelled);
            }
            Err(error) => tracing::warn!(%error, "sweeping parked deliveries failed"),
        }
        match queue::ordered::sweep(&db).await {
            Ok(swept) => {
                metrics::counter!(ORDERED_SWEPT_TOTAL, "action" => "released")
                    .increment(swept.released);
                metrics::counter!(ORDERED_SWEPT_TOTAL, "action" => "idled").increment(swept.idled);
                metrics::counter!(PARKED_SWEPT_TOTAL, "action" => "cancelled")
                    .increment(swept.cancelled);
            }
            Err(error) => tracing::warn!(%error, "sweeping ordered keys failed"),
        }
        match queue::ordered::blocked(&db).await {
            Ok((blocked, oldest)) => {
                metrics::gauge!(ORDERED_BLOCKED_KEYS).set(blocked as f64);
                metrics::gauge!(ORDERED_OLDEST_BLOCKED_AGE).set(oldest);
            }
            Err(error) => tracing::warn!(%error, "sampling blocked ordered keys failed"),
        }
        let due = last_purge.is_none_or(|at| at.elapsed() >= schedule.purge_every);
        if due {
            last_purge = Some(Instant::now());
            ensure_partitions(&db).await;
        }
        if let (Some(retention), true) = (schedule.retention, due) {
            match purge(&db, retention).await {
                Ok(purged) => {
                    metrics::counter!(PURGED_TOTAL).increment(purged.events);
                    metrics::gauge!(RETENTION_DAYS_HELD).set(f64::from(purged.days_held));
                    if purged.events > 0 {
                        tracing::info!(
                            purged = purged.events,
                            days = purged.days_dropped,
                            "retention: old events removed"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "retention purge failed"),
            }
        }
    }
}

/// Creates the history partitions of today and the days ahead that are missing, and reports
/// how many days ahead exist. Runs with each retention pass (at most hourly by default), so the
/// days ahead never run out while a leader lives.
async fn ensure_partitions(db: &sea_orm::DatabaseConnection) {
    match partitions::ensure_ahead(db).await {
        Ok(0) => {}
        Ok(made) => tracing::info!(days = made, "history partitions created ahead"),
        Err(error) => tracing::warn!(%error, "creating history partitions ahead failed"),
    }
    match partitions::days(db).await {
        Ok((days, _)) => {
            let today = chrono::Utc::now().date_naive();
            let ahead = days.iter().filter(|d| **d > today).count();
            metrics::gauge!(PARTITION_DAYS_AHEAD).set(ahead as f64);
        }
        Err(error) => tracing::warn!(%error, "listing history partitions failed"),
    }
}

/// A connection holding the leader lock, or `None` when another replica leads.
async fn try_lead(pool: &PgPool) -> Option<PgConnection> {
    let mut conn = match pool.acquire().await {
        Ok(c) => c.detach(),
        Err(error) => {
            tracing::debug!(%error, "no connection for the maintenance lock");
            return None;
        }
    };
    let locked: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK)
        .fetch_one(&mut conn)
        .await;
    match locked {
        Ok(true) => Some(conn),
        _ => {
            let _ = conn.close().await;
            None
        }
    }
}

/// Folds the count changes that event writes appended into the per-day history counts, which
/// keeps the table the api sums for `total` small. Returns how many changes it folded.
pub async fn fold_counts(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT webhook_event_counts_fold()")
        .fetch_one(conn)
        .await
}

/// Sets the queue gauges from the jobs table, and the table-size gauges.
async fn sample(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let (pending, oldest) = queue::stats::pending(conn).await?;
    metrics::gauge!(QUEUE_PENDING).set(pending as f64);
    metrics::gauge!(QUEUE_OLDEST_AGE).set(oldest);
    for table in queue::stats::tables(conn).await? {
        metrics::gauge!(TABLE_ROWS, "table" => table.name).set(table.rows as f64);
        metrics::gauge!(TABLE_BYTES, "table" => table.name).set(table.bytes as f64);
    }
    Ok(())
}
