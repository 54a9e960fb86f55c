//! Retention: deleting events no delivery will change again, once they are old enough. The
//! worker's maintenance leader runs it on a schedule; `api purge` runs it on demand.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

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
