//! The history's day partitions (migration `m20261210_000001_partitioned_history`): which ids a
//! UTC day holds, creating days ahead, and dropping a whole day.
//!
//! An event id is `day << DAY_SHIFT | sequence`, where `day` is the UTC day number of its
//! `created_at`; `webhook_events_pYYYYMMDD` holds exactly that day's ids, and
//! `webhook_attempts_pYYYYMMDD` the attempts of those events. Ids below [`LEGACY_ID_BOUND`] are
//! in the legacy partitions, the tables as they were before partitioning.

use chrono::{DateTime, Days, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionError, TransactionTrait};

pub use migration::{DAY_SHIFT, DAYS_AHEAD, LEGACY_ID_BOUND};

/// How long a drop waits for the exclusive lock on the history tables before it gives up until
/// the next pass. Writers queue behind a waiting drop, so this bounds the stall it can cause.
pub const DROP_LOCK_TIMEOUT: &str = "500ms";

/// The legacy partitions' names.
pub const LEGACY_EVENTS: &str = "webhook_events_legacy";
const LEGACY_ATTEMPTS: &str = "webhook_attempts_legacy";

/// The first event id of `day`'s partition.
pub fn first_id(day: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN);
    day.signed_duration_since(epoch).num_days() << DAY_SHIFT
}

/// The first id of the day of `at` (UTC).
pub fn first_id_at(at: DateTime<Utc>) -> i64 {
    first_id(at.date_naive())
}

/// The first id past `day`'s partition.
pub fn end_id(day: NaiveDate) -> i64 {
    first_id(day) + (1 << DAY_SHIFT)
}

/// The UTC creation day of a partitioned (non-legacy) event id.
pub fn day_of(id: i64) -> Option<NaiveDate> {
    if id < LEGACY_ID_BOUND {
        return None;
    }
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    epoch.checked_add_days(Days::new(u64::try_from(id >> DAY_SHIFT).ok()?))
}

fn events_table(day: NaiveDate) -> String {
    format!("webhook_events_p{}", day.format("%Y%m%d"))
}

fn attempts_table(day: NaiveDate) -> String {
    format!("webhook_attempts_p{}", day.format("%Y%m%d"))
}

/// Creates the partitions of the days `first..=last` that do not exist yet; returns how many
/// days it created. Attaching takes a SHARE UPDATE EXCLUSIVE lock: reads and writes go on.
pub async fn ensure_days(
    db: &impl ConnectionTrait,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<i32, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT webhook_history_ensure_days($1, $2) AS made",
            [first.into(), last.into()],
        ))
        .await?
        .ok_or(DbErr::RecordNotFound("webhook_history_ensure_days".into()))?;
    row.try_get("", "made")
}

/// Creates today's partitions and [`DAYS_AHEAD`] more, as far as they are missing.
pub async fn ensure_ahead(db: &impl ConnectionTrait) -> Result<i32, DbErr> {
    let today = Utc::now().date_naive();
    let last = today
        .checked_add_days(Days::new(u64::from(DAYS_AHEAD.unsigned_abs())))
        .unwrap_or(today);
    ensure_days(db, today, last).await
}

/// The days that have partitions, oldest first, and whether the legacy partitions exist.
pub async fn days(db: &impl ConnectionTrait) -> Result<(Vec<NaiveDate>, bool), DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname::text AS name FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'webhook_events'::regclass ORDER BY 1",
        ))
        .await?;
    let mut days = Vec::with_capacity(rows.len());
    let mut legacy = false;
    for row in rows {
        let name: String = row.try_get("", "name")?;
        if name == LEGACY_EVENTS {
            legacy = true;
        } else if let Some(day) = name
            .strip_prefix("webhook_events_p")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        {
            days.push(day);
        }
    }
    days.sort();
    Ok((days, legacy))
}

/// What [`drop_day`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The day is gone, with this many events.
    Events(u64),
    /// The day still holds a pending event, so it stays whole.
    HeldPending,
    /// The tables stayed busy for [`DROP_LOCK_TIMEOUT`]; the next pass tries again.
    Busy,
}

/// Which partitions a drop removes.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// One day's partitions.
    Day(NaiveDate),
    /// The legacy partitions (dropped only once [`crate::retention`] has emptied them).
    Legacy,
}

/// Drops a day's partitions (events and attempts) unless it holds a pending event, and takes
/// its events out of the history counts, in one transaction. It holds an ACCESS EXCLUSIVE lock
/// on both tables (what dropping a partition needs) for catalog work only, or gives up after
/// [`DROP_LOCK_TIMEOUT`]; under that lock no statement can make an event of the day pending
/// again (a manual retry) between the check and the drop.
pub async fn drop_day(db: &impl TransactionTrait, part: Part) -> Result<Dropped, DbErr> {
    let (events, attempts, day) = match part {
        Part::Day(day) => (events_table(day), attempts_table(day), Some(day)),
        Part::Legacy => (LEGACY_EVENTS.to_owned(), LEGACY_ATTEMPTS.to_owned(), None),
    };
    let result = db
        .transaction::<_, Dropped, DbErr>(|txn| {
            Box::pin(async move {
                let sql = |s: String| Statement::from_string(DbBackend::Postgres, s);
                txn.execute_raw(sql(format!(
                    "SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"
                )))
                .await?;
                txn.execute_raw(sql(
                    "LOCK TABLE webhook_events, webhook_attempts IN ACCESS EXCLUSIVE MODE".into(),
                ))
                .await?;
                let exists = txn
                    .query_one_raw(sql(format!(
                        "SELECT to_regclass('{events}') IS NOT NULL AS present, \
                                to_regclass('{attempts}') IS NOT NULL AS attempts_present"
                    )))
                    .await?
                    .ok_or(DbErr::RecordNotFound(events.clone()))?;
                let present: bool = exists.try_get("", "present")?;
                let attempts_present: bool = exists.try_get("", "attempts_present")?;
                if !present {
                    return Ok(Dropped::Events(0));
                }
                let pending = txn
                    .query_one_raw(sql(format!(
                        "SELECT EXISTS (SELECT FROM ONLY {events} WHERE status = 'pending') AS p"
                    )))
                    .await?
                    .ok_or(DbErr::RecordNotFound(events.clone()))?;
                if pending.try_get::<bool>("", "p")? {
                    return Ok(Dropped::HeldPending);
                }
                let n = forget_counts(txn, &events, day).await?;
                if attempts_present {
                    txn.execute_raw(sql(format!("DROP TABLE {attempts}")))
                        .await?;
                }
                txn.execute_raw(sql(format!("DROP TABLE {events}"))).await?;
                Ok(Dropped::Events(n))
            })
        })
        .await;
    match result {
        Ok(dropped) => Ok(dropped),
        Err(TransactionError::Connection(e) | TransactionError::Transaction(e))
            if is_lock_timeout(&e) =>
        {
            Ok(Dropped::Busy)
        }
        Err(TransactionError::Connection(e) | TransactionError::Transaction(e)) => Err(e),
    }
}

/// Takes a partition's events out of the history counts; returns how many there were. A day
/// with no legacy partition beside it owns its day of counts whole; otherwise its events are
/// counted (the legacy partition may still hold events of the same day).
async fn forget_counts(
    txn: &impl ConnectionTrait,
    events: &str,
    day: Option<NaiveDate>,
) -> Result<u64, DbErr> {
    let sql = |s: &str| Statement::from_string(DbBackend::Postgres, s.to_owned());
    let legacy = txn
        .query_one_raw(sql(&format!(
            "SELECT to_regclass('{LEGACY_EVENTS}') IS NOT NULL AS legacy"
        )))
        .await?
        .map(|r| r.try_get::<bool>("", "legacy"))
        .transpose()?
        .unwrap_or(true);
    match day {
        Some(day) if !legacy => {
            txn.execute_raw(sql("SELECT webhook_event_counts_fold()"))
                .await?;
            let row = txn
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "WITH gone AS (DELETE FROM webhook_event_counts WHERE day = $1 RETURNING n) \
                     SELECT COALESCE(sum(n), 0)::bigint AS n FROM gone",
                    [day.into()],
                ))
                .await?;
            let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
            Ok(u64::try_from(n).unwrap_or(0))
        }
        _ => {
            let row = txn
                .query_one_raw(sql(&format!(
                    "WITH gone AS ( \
                       INSERT INTO webhook_event_count_deltas \
                       SELECT (created_at AT TIME ZONE 'UTC')::date, direction, source, \
                              event_type, status, COALESCE(webhook_config_id, 0), -count(*) \
                       FROM ONLY {events} GROUP BY 1, 2, 3, 4, 5, 6 RETURNING n) \
                     SELECT COALESCE(-sum(n), 0)::bigint AS n FROM gone"
                )))
                .await?;
            let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
            Ok(u64::try_from(n).unwrap_or(0))
        }
    }
}

/// A lock wait that hit `lock_timeout` (SQLSTATE 55P03, `lock_not_available`).
fn is_lock_timeout(error: &DbErr) -> bool {
    let code = match error {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    };
    code.as_deref() == Some("55P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_holds_the_ids_between_its_first_and_the_next_days_first() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 6).expect("date");
        let next = day.succ_opt().expect("next");
        assert_eq!(end_id(day), first_id(next));
        assert_eq!(day_of(first_id(day)), Some(day));
        assert_eq!(day_of(end_id(day) - 1), Some(day));
        assert_eq!(day_of(LEGACY_ID_BOUND - 1), None);
    }

    #[test]
    fn ids_stay_safe_in_javascript_for_three_centuries() {
        let day = NaiveDate::from_ymd_opt(2300, 1, 1).expect("date");
        assert!(end_id(day) < 1 << 53);
        assert!(first_id(NaiveDate::from_ymd_opt(1970, 1, 2).expect("date")) >= LEGACY_ID_BOUND);
    }
}
