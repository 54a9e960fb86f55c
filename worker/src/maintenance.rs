//! Work one replica does for all: sampling the queue gauges, folding the history counts, and
//! purging old events.
//!
//! The replica holding a PostgreSQL advisory lock on its own connection is the leader; when it
//! dies its connection closes, the lock is freed and another replica takes over on its next tick.

use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::sqlx::{self, Connection, PgConnection, PgPool};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::job::QUEUE;
use crate::metrics::{PURGED_TOTAL, QUEUE_OLDEST_AGE, QUEUE_PENDING};

/// Advisory lock key of the maintenance leader: "wirehool" in ASCII, one above the migration
/// lock ("wirehook"), which a leader holding it for its whole life would otherwise block.
const LEADER_LOCK: i64 = 0x7769_7265_686f_6f6c;

/// Events deleted per transaction by [`purge`] (their attempts go with them).
pub const PURGE_BATCH: i64 = 1000;

/// Statuses no delivery or retry will ever change again.
const FINAL_STATUSES: &str =
    "'delivered', 'failed', 'cancelled', 'processed', 'ignored', 'rejected'";

/// Deletes events in a final state created before `older_than` ago, with their attempts, in
/// transactions of at most [`PURGE_BATCH`] events; returns how many. Pending events are kept.
pub async fn purge(db: &impl ConnectionTrait, older_than: Duration) -> Result<u64, DbErr> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX / 2);
    let mut total = 0;
    loop {
        let deleted = db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "DELETE FROM webhook_events WHERE id IN ( \
                       SELECT id FROM webhook_events \
                       WHERE created_at < $1 AND status IN ({FINAL_STATUSES}) \
                       ORDER BY created_at, id LIMIT $2)"
                ),
                [cutoff.into(), PURGE_BATCH.into()],
            ))
            .await?
            .rows_affected();
        total += deleted;
        if deleted < PURGE_BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

/// Settings of [`run`].
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// How often the leader samples the queue gauges and folds the history counts.
    pub sample_every: Duration,
    /// Age past which final-state events are purged; `None` keeps everything.
    pub retention: Option<Duration>,
    /// How often the leader purges.
    pub purge_every: Duration,
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
        let due = last_purge.is_none_or(|at| at.elapsed() >= schedule.purge_every);
        if let (Some(retention), true) = (schedule.retention, due) {
            last_purge = Some(Instant::now());
            match purge(&db, retention).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!(PURGED_TOTAL).increment(n);
                    tracing::info!(purged = n, "retention: old events deleted");
                }
                Err(error) => tracing::warn!(%error, "retention purge failed"),
            }
        }
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

/// Sets the queue gauges from the jobs table.
async fn sample(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let (pending, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), \
                EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8 \
         FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending'",
    )
    .bind(QUEUE)
    .fetch_one(conn)
    .await?;
    metrics::gauge!(QUEUE_PENDING).set(pending as f64);
    metrics::gauge!(QUEUE_OLDEST_AGE).set(oldest.unwrap_or(0.0).max(0.0));
    Ok(())
}
