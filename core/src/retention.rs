//! Retention: removing events no delivery will change again, once they are old enough. The
//! worker's maintenance leader runs it on a schedule; `api purge` runs it on demand.
//!
//! The history is partitioned by UTC creation day (`crate::partitions`), so retention drops
//! whole days: a day whose end is older than the retention age goes with its attempts, in one
//! short transaction, unless it still holds a `pending` event: such a day is kept whole until
//! its last pending event settles (its final events stay that long too). Dropping writes almost
//! no WAL and leaves nothing to vacuum; deleting rows wrote every row's deletion and left the
//! dead rows to vacuum. The legacy partitions (the tables from before partitioning) are still
//! purged row by row, as before, and dropped once empty.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::Utc;
use entity::EventStatus;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Iterable, Statement, TransactionTrait};

use crate::partitions::{self, Dropped, LEGACY_ID_BOUND, Part};
/// Events deleted per transaction from the legacy partition (their attempts go with them).
pub const PURGE_BATCH: i64 = 1000;

/// The statuses for which [`EventStatus::is_final`] holds, as the SQL list `'processed', …`.
///
/// Literals rather than a bound array: with literals, every run of the prepared statement knows
/// how common these statuses are. With an array parameter its generic plan guesses, and when a
/// backlog leaves most old events `pending` it walks `webhook_events_created` filtering them out
/// instead of reading `webhook_events_status_created` (`EXPLAIN ANALYZE` on 300,000 events, 98%
/// pending: 13 ms against 7 ms per batch of 1,000, growing with the backlog).
static FINAL_STATUSES: LazyLock<String> = LazyLock::new(|| {
    EventStatus::iter()
        .filter(|status| status.is_final())
        .map(EventStatus::sql_literal)
        .collect::<Vec<_>>()
        .join(", ")
});

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Events removed (dropped with their day, or deleted from the legacy partition).
    pub events: u64,
    /// Days dropped.
    pub days_dropped: u32,
    /// Days old enough to go that were kept because they hold a pending event.
    pub days_held: u32,
    /// Days left to the next pass because the tables stayed busy.
    pub days_busy: u32,
}

/// Removes events created before `older_than` ago: every day partition that ended before then
/// and holds no pending event, and the final-state events of the legacy partition (in
/// transactions of at most [`PURGE_BATCH`] events, with their attempts). An event therefore
/// goes between `older_than` and `older_than` + 1 day after it was created. A retention under
/// one day deletes final-state rows instead, as retention did before partitioning.
pub async fn purge(
    db: &(impl ConnectionTrait + TransactionTrait),
    older_than: Duration,
) -> Result<Purged, DbErr> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX / 2);
    let mut purged = Purged::default();
    let (days, legacy) = partitions::days(db).await?;
    // A day goes once its last moment is older than the cutoff.
    for day in days.into_iter().filter(|d| *d < cutoff.date_naive()) {
        match partitions::drop_day(db, Part::Day(day)).await? {
            Dropped::Events(n) => {
                purged.events += n;
                purged.days_dropped += 1;
                tracing::info!(%day, events = n, "retention: day dropped");
            }
            Dropped::HeldPending => {
                purged.days_held += 1;
                tracing::info!(%day, "retention: day kept, it holds pending events");
            }
            Dropped::Busy => purged.days_busy += 1,
        }
    }
    if older_than < ONE_DAY {
        // A day ends before any of its events is a day old: a retention this short (tests and
        // soak runs, `RETENTION_SECS`) deletes rows, in every partition, as before.
        purged.events += purge_rows(db, cutoff, i64::MAX).await?;
    } else if legacy {
        purged.events += purge_rows(db, cutoff, LEGACY_ID_BOUND).await?;
    }
    if legacy && legacy_is_empty(db).await? {
        match partitions::drop_day(db, Part::Legacy).await? {
            Dropped::Events(_) => tracing::info!("retention: legacy partitions dropped"),
            Dropped::HeldPending | Dropped::Busy => {}
        }
    }
    // Ordering keys idle as long: their events are going or gone.
    let keys = crate::queue::ordered::forget_idle(db, cutoff).await?;
    if keys > 0 {
        tracing::info!(keys, "retention: idle ordering keys deleted");
    }
    Ok(purged)
}

/// A retention shorter than this deletes rows (see [`purge`]).
const ONE_DAY: Duration = Duration::from_secs(86_400);

/// The old row-by-row purge of the final-state events below `id_bound` created before `cutoff`
/// (`LEGACY_ID_BOUND`: the legacy partition only, which the bound prunes to), with their
/// attempts.
async fn purge_rows(
    db: &impl ConnectionTrait,
    cutoff: chrono::DateTime<Utc>,
    id_bound: i64,
) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "WITH gone AS ( \
                       DELETE FROM webhook_events WHERE id < {id_bound} AND id IN ( \
                         SELECT id FROM webhook_events \
                         WHERE id < {id_bound} AND created_at < $1 AND status IN ({}) \
                         ORDER BY created_at, id LIMIT $2) \
                       RETURNING id), \
                     attempts AS ( \
                       DELETE FROM webhook_attempts \
                       WHERE event_id < {id_bound} AND event_id IN (SELECT id FROM gone)) \
                     SELECT count(*) AS n FROM gone",
                    *FINAL_STATUSES
                ),
                [cutoff.into(), PURGE_BATCH.into()],
            ))
            .await?;
        let deleted: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
        let deleted = u64::try_from(deleted).unwrap_or(0);
        total += deleted;
        if deleted < PURGE_BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

async fn legacy_is_empty(db: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT NOT EXISTS (SELECT FROM {} ) AS empty",
                partitions::LEGACY_EVENTS
            ),
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<bool>("", "empty"))
        .transpose()?
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_are_every_status_but_pending() {
        assert_eq!(
            *FINAL_STATUSES,
            "'processed', 'ignored', 'rejected', 'delivered', 'failed', 'cancelled'"
        );
    }
}
