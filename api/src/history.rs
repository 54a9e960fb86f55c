//! Event history queries: the filters of `GET /api/webhooks/events` and their exact total.
//!
//! The total comes from the per-day counts the database keeps by trigger
//! (`webhook_event_counts` plus the deltas not yet folded into it), so it costs a scan of a
//! small table instead of a count over millions of events. Only the parts of a date range that
//! cover a day partly are counted on the events themselves, through the `created_at` indexes.
//! A call id search is counted on the events too: the per-day counts have no call id, and the
//! `webhook_events_call_id` index holds only that call's few rows.
//!
//! Date filters also bound the id, whose high bits are the creation day: the planner then
//! reads only the day partitions the range reaches (`wirehook_core::partitions`).

use chrono::{DateTime, Days, NaiveDate, Utc};
use entity::{Direction, EventStatus, Source, webhook_events};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveEnum, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, Select, Statement, Value,
};
use wirehook_core::partitions;

/// History filters as parsed from the query string; `None` means unfiltered.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub direction: Option<Direction>,
    pub source: Option<Source>,
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created at or before.
    pub to: Option<DateTime<Utc>>,
    pub config_id: Option<i64>,
    /// The payload's `callId` (exact).
    pub call_id: Option<String>,
}

impl Filter {
    /// `q` narrowed to the events that match.
    pub fn apply(&self, mut q: Select<webhook_events::Entity>) -> Select<webhook_events::Entity> {
        use webhook_events::Column as C;
        if let Some(d) = self.direction {
            q = q.filter(C::Direction.eq(d));
        }
        if let Some(s) = self.source {
            q = q.filter(C::Source.eq(s));
        }
        if let Some(t) = &self.event_type {
            q = q.filter(C::EventType.eq(t.as_str()));
        }
        if let Some(s) = self.status {
            q = q.filter(C::Status.eq(s));
        }
        // The same range on the id prunes the day partitions the dates cannot reach (an id
        // starts with its creation day; the legacy partition, ids below 2^36, stays in).
        if let Some(f) = self.from {
            q = q.filter(C::CreatedAt.gte(f)).filter(
                Condition::any()
                    .add(C::Id.lt(partitions::LEGACY_ID_BOUND))
                    .add(C::Id.gte(partitions::first_id_at(f))),
            );
        }
        if let Some(t) = self.to {
            q = q
                .filter(C::CreatedAt.lte(t))
                .filter(C::Id.lt(partitions::end_id(t.date_naive())));
        }
        if let Some(c) = self.config_id {
            q = q.filter(C::WebhookConfigId.eq(c));
        }
        if let Some(call) = &self.call_id {
            // Written as the index `webhook_events_call_id` is (the key a literal, not a bound
            // parameter), so that generic plans of the prepared statement still use it.
            q = q.filter(Expr::cust_with_values(
                r#"("webhook_events"."payload" ->> 'callId') = $1"#,
                [call.as_str()],
            ));
        }
        q
    }

    /// The UTC days the date range covers entirely, as `[first, last]`; `None` on a side is
    /// open. Empty when `first > last`.
    fn whole_days(&self) -> (Option<NaiveDate>, Option<NaiveDate>) {
        let first = self.from.map(|from| {
            let day = from.date_naive();
            if day.and_time(chrono::NaiveTime::MIN).and_utc() == from {
                day
            } else {
                day + Days::new(1)
            }
        });
        // Day d is whole when the next day starts at or before `to`.
        let last = self
            .to
            .map(|to| to.date_naive().pred_opt().unwrap_or(NaiveDate::MIN));
        (first, last)
    }
}

/// How many events match `filter`, exactly.
pub async fn total(db: &impl ConnectionTrait, filter: &Filter) -> Result<u64, DbErr> {
    if filter.call_id.is_some() {
        return filter.apply(webhook_events::Entity::find()).count(db).await;
    }
    let (first, last) = filter.whole_days();
    let whole_days = !matches!((first, last), (Some(a), Some(b)) if a > b);
    let mut total = 0;
    if whole_days {
        total += counted(db, filter, first, last).await?;
    }
    if filter.from.is_some() || filter.to.is_some() {
        use webhook_events::Column as C;
        let mut edges = filter.apply(webhook_events::Entity::find());
        if whole_days {
            let mut outside = Condition::any();
            if let Some(first) = first {
                outside = outside.add(C::CreatedAt.lt(midnight(first)));
            }
            if let Some(next) = last.and_then(|l| l.checked_add_days(Days::new(1))) {
                outside = outside.add(C::CreatedAt.gte(midnight(next)));
            }
            edges = edges.filter(outside);
        }
        total += edges.count(db).await?;
    }
    Ok(total)
}

/// The sum of the per-day counts matching `filter` on days `[first, last]`.
async fn counted(
    db: &impl ConnectionTrait,
    filter: &Filter,
    first: Option<NaiveDate>,
    last: Option<NaiveDate>,
) -> Result<u64, DbErr> {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut add = |column: &str, op: &str, value: Value| {
        values.push(value);
        conditions.push(format!("{column} {op} ${}", values.len()));
    };
    if let Some(d) = filter.direction {
        add("direction", "=", d.to_value().into());
    }
    if let Some(s) = filter.source {
        add("source", "=", s.to_value().into());
    }
    if let Some(t) = &filter.event_type {
        add("event_type", "=", t.as_str().into());
    }
    if let Some(s) = filter.status {
        add("status", "=", s.to_value().into());
    }
    if let Some(c) = filter.config_id {
        add("webhook_config_id", "=", c.into());
    }
    if let Some(first) = first {
        add("day", ">=", first.into());
    }
    if let Some(last) = last {
        add("day", "<=", last.into());
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT COALESCE(sum(n), 0)::bigint AS n FROM ( \
                   SELECT n FROM webhook_event_counts {filter} \
                   UNION ALL SELECT n FROM webhook_event_count_deltas {filter}) AS c"
            ),
            values,
        ))
        .await?;
    let n = row.map(|r| r.try_get::<i64>("", "n")).transpose()?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn day(s: &str) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    }

    fn whole(from: Option<&str>, to: Option<&str>) -> (Option<NaiveDate>, Option<NaiveDate>) {
        Filter {
            from: from.and_then(at),
            to: to.and_then(at),
            ..Filter::default()
        }
        .whole_days()
    }

    #[test]
    fn an_open_range_covers_every_day() {
        assert_eq!(whole(None, None), (None, None));
    }

    #[test]
    fn a_range_from_midnight_covers_that_day() {
        assert_eq!(
            whole(Some("2026-03-02T00:00:00Z"), None),
            (day("2026-03-02"), None)
        );
    }

    #[test]
    fn a_range_from_mid_day_starts_covering_the_next_day() {
        assert_eq!(
            whole(Some("2026-03-02T00:00:01Z"), None),
            (day("2026-03-03"), None)
        );
    }

    #[test]
    fn a_range_to_midnight_covers_the_day_before() {
        assert_eq!(
            whole(None, Some("2026-03-05T00:00:00Z")),
            (None, day("2026-03-04"))
        );
    }

    #[test]
    fn a_range_to_the_last_millisecond_of_a_day_leaves_that_day_to_the_exact_count() {
        assert_eq!(
            whole(None, Some("2026-03-05T23:59:59.999Z")),
            (None, day("2026-03-04"))
        );
    }

    #[test]
    fn a_range_within_one_day_covers_no_whole_day() {
        let (first, last) = whole(Some("2026-03-05T01:00:00Z"), Some("2026-03-05T02:00:00Z"));
        assert!(first > last);
    }
}
