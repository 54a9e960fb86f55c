//! Replica leases in `apalis.workers`, and handing a replica's jobs back to the queue.

use std::time::Duration;

use sea_orm::sqlx::{self, PgConnection, PgPool};

use crate::job::QUEUE;

/// Renews `worker`'s lease, then re-enqueues the jobs of replicas whose lease (`lease`) expired.
pub async fn renew_lease(
    conn: &mut PgConnection,
    worker: &str,
    lease: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    sqlx::query("UPDATE apalis.workers SET last_seen = now() WHERE id = $1")
        .bind(worker)
        .execute(&mut *conn)
        .await?;
    apalis_postgres::queries::reenqueue_orphaned(&mut *conn, QUEUE, lease.as_secs()).await?;
    Ok(())
}

/// Puts jobs locked by `worker` back to `Pending` (a started one counts as an attempt).
/// With `and_generations`, also those of its restarted workers (`<worker>~<n>`).
pub async fn release_jobs(
    pool: &PgPool,
    worker: &str,
    and_generations: bool,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL, done_at = NULL, \
             attempts = attempts + CASE WHEN status = 'Running' THEN 1 ELSE 0 END, \
             last_result = '{\"Err\": \"Re-enqueued: the worker holding it stopped\"}'::jsonb \
         WHERE status IN ('Queued', 'Running') \
           AND (lock_by = $1 OR ($2 AND starts_with(lock_by, $1 || '~')))",
    )
    .bind(worker)
    .bind(and_generations)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}
