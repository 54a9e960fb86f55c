//! Finished jobs: apalis keeps every job row once it is `Done`, `Killed`, or `Failed` past its
//! attempts, and nothing here reads them after a short while. The maintenance leader deletes
//! them once they are older than `JOB_HISTORY_SECS`, in small batches, so `apalis.jobs` holds
//! what is pending, running, or recently finished (for debugging), whatever the traffic.

use std::time::Duration;

use sea_orm::sqlx::{self, PgConnection};

use crate::job::QUEUE;

/// Rows one statement deletes: short transactions, few locks held at once.
pub const BATCH: i64 = 5_000;

/// Batches one [`forget`] runs at most, so one tick cannot hold the leader for long; at the
/// leader's default tick (5 s) that is 40,000 jobs/s, far above any delivery rate.
const MAX_BATCHES: u32 = 40;

/// The jobs apalis will not run again. Spelled as the partial index `apalis_jobs_finished`
/// (created by `migration::migrate`) spells it, so the planner uses that index.
macro_rules! finished {
    () => {
        "(status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))"
    };
}

/// [`finished!`] as a value, for tests and the migration to compare against.
pub const FINISHED: &str = finished!();

const FORGET: &str = concat!(
    "DELETE FROM apalis.jobs WHERE id IN (SELECT id FROM apalis.jobs WHERE ",
    finished!(),
    " AND done_at < now() - $1 * interval '1 millisecond' AND job_type = $2 \
     ORDER BY done_at LIMIT $3)"
);

/// Deletes the delivery jobs that finished more than `keep` ago; returns how many.
pub async fn forget(conn: &mut PgConnection, keep: Duration) -> Result<u64, sqlx::Error> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let deleted = sqlx::query(FORGET)
            .bind(keep_ms as f64)
            .bind(QUEUE)
            .bind(BATCH)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}
