//! The engine's database side, in batches: load the deliveries of many jobs with one query, and
//! record many attempts in one short transaction (one INSERT of attempt rows, one guarded UPDATE
//! of their events, one INSERT of follow-up jobs). Endpoint-health writes happen only for
//! failing endpoints, so a healthy delivery costs no statement of its own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{ConfigId, ConfigStatus, EventId, EventStatus, webhook_configs, webhook_events};
use sea_orm::sea_query::extension::postgres::PgFunc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    SelectTwo, Statement, TransactionTrait,
};
use serde_json::{Value, json};

use crate::queue::{Due, ordered, parked, push_jobs};

/// An outbound event with its configuration (`None` when the configuration was deleted).
pub type Loaded = (webhook_events::Model, Option<webhook_configs::Model>);

/// Loads the events `ids` with their configurations in one query; one entry per id, in order.
///
/// The ids go in as one array (`id = ANY($1)`), not as `IN ($1, …, $n)`: one statement text for
/// every batch size, so each pooled connection prepares it once instead of re-preparing (and
/// caching, client and server side) a statement per size. The [`IdSpan`] beside it prunes the
/// day partitions.
pub async fn load_batch(
    db: &DatabaseConnection,
    ids: Vec<EventId>,
) -> Result<Vec<Option<Loaded>>, DbErr> {
    let Some(span) = IdSpan::of(ids.iter().copied()) else {
        return Ok(Vec::new());
    };
    let rows = load_query(&ids, span).all(db).await?;
    let by_id: HashMap<EventId, Loaded> = rows
        .into_iter()
        .map(|row| (EventId(row.0.id), row))
        .collect();
    Ok(ids.iter().map(|id| by_id.get(id).cloned()).collect())
}

/// The query [`load_batch`] runs: the events `ids` (within `span`) with their configurations.
pub fn load_query(
    ids: &[EventId],
    span: IdSpan,
) -> SelectTwo<webhook_events::Entity, webhook_configs::Entity> {
    let id_column = || Expr::col((webhook_events::Entity, webhook_events::Column::Id));
    webhook_events::Entity::find()
        .find_also_related(webhook_configs::Entity)
        .filter(ExprTrait::eq(
            id_column(),
            PgFunc::any(Expr::val(ids.to_vec())),
        ))
        .filter(id_column().between(span.first.0, span.last.0))
}

/// When a failing endpoint is disabled: after failing continuously for `after`, with at least
/// `min_failures` failed attempts. A delivered attempt resets the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoDisable {
    pub after: Duration,
    pub min_failures: i32,
}

impl Default for AutoDisable {
    /// 120 hours (as Svix does) and 10 failed attempts.
    fn default() -> Self {
        Self {
            after: Duration::from_secs(120 * 3600),
            min_failures: 10,
        }
    }
}

/// What an attempt does to its endpoint's health record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Delivered to an endpoint that was healthy when the delivery was loaded. Failures may
    /// have been recorded since (concurrent deliveries load before each other's outcomes), so
    /// after the batch commits, the failing clock of a configuration that has one but is not
    /// gated is cleared (see [`record_batch`]).
    StillHealthy,
    /// Delivered to an endpoint that was failing: clear its clock and probe slot, and wake the
    /// deliveries parked behind it.
    Recovered,
    /// Failed: start or count on the failing clock, maybe gate the endpoint or disable it
    /// (unless a delivery to the same endpoint is in the same batch: then these were not
    /// failures in a row).
    Failed {
        /// The attempt held the gated endpoint's probe slot.
        probe: bool,
    },
}

/// One recorded attempt: its row, the event's new state, and its effects on the configuration.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub event_id: EventId,
    pub config_id: ConfigId,
    /// `attempts` the event had when the job loaded it; the update applies only if unchanged.
    pub prior_attempts: i32,
    pub row: AttemptRow,
    /// The event's status after the attempt: `delivered`, `failed`, or `pending` with a retry
    /// due at `next_attempt_at`; written as it is.
    pub status: EventStatus,
    pub response_data: Value,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub now: DateTime<Utc>,
    /// The endpoint answered 410: disable the configuration.
    pub gone: bool,
    pub health: Health,
    /// An ordered delivery that may release its key once recorded (see
    /// [`crate::queue::ordered`]); `None` for every unordered delivery, which then costs no
    /// statement of its own.
    pub release: Option<ordered::Release>,
}

/// One `webhook_attempts` row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub event_id: EventId,
    /// 1 for the event's first attempt; keeps counting across manual retries.
    pub attempt: i32,
    pub request_headers: Value,
    pub status_code: Option<i32>,
    pub response_headers: Option<Value>,
    pub response_body: Option<String>,
    pub truncated: bool,
    pub duration_ms: i32,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl AttemptRow {
    fn to_json(&self) -> Value {
        json!({
            "event_id": self.event_id,
            "attempt": self.attempt,
            "request_headers": self.request_headers,
            "status_code": self.status_code,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
            "truncated": self.truncated,
            "duration_ms": self.duration_ms,
            "error_kind": self.error_kind,
            "error_message": self.error_message,
            "created_at": self.created_at.to_rfc3339(),
        })
    }
}

/// Inserts attempt rows in one statement whose text is the same for any number of rows.
///
/// A `VALUES` list (sea-orm's `insert_many`) is a different statement for each batch size, with
/// eleven parameters a row: every pooled connection prepared and cached up to a hundred of them,
/// some with thousands of parameters, and the worker's memory rose for as long as its
/// connections lived (and PostgreSQL's backends kept the plans too).
async fn insert_attempts<'a>(
    txn: &impl ConnectionTrait,
    rows: impl IntoIterator<Item = &'a AttemptRow>,
) -> Result<(), DbErr> {
    let rows: Vec<Value> = rows.into_iter().map(AttemptRow::to_json).collect();
    if rows.is_empty() {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO webhook_attempts \
           (event_id, attempt, request_headers, status_code, response_headers, response_body, \
            truncated, duration_ms, error_kind, error_message, created_at) \
         SELECT event_id, attempt, request_headers, status_code, response_headers, \
                response_body, truncated, duration_ms, error_kind, error_message, created_at \
         FROM jsonb_to_recordset($1::jsonb) AS r(event_id bigint, attempt integer, \
              request_headers jsonb, status_code integer, response_headers jsonb, \
              response_body text, truncated boolean, duration_ms integer, error_kind text, \
              error_message text, created_at timestamptz)",
        [Value::Array(rows).into()],
    ))
    .await?;
    Ok(())
}

/// The guarded update of a batch's events: `$1` the new states (JSON), `$2` their ids, `$3`..`$5`
/// the texts of `pending`, `delivered` and `failed`, `$6`/`$7` the ids' [`IdSpan`].
///
/// Failures apply only to the attempt count they were made at; a delivery applies to any
/// pending state, since a racing job may have counted a failure meanwhile, and to a failed one:
/// after a worker died between recording and acknowledging, the job's second run can still get
/// a 2xx while the first run's last failure already failed the event for good. The receiver's
/// 2xx is the truth.
///
/// `id = ANY($2)` keeps the plan on the primary key: with only the recordset to go by, the
/// generic plan hash-joins a sequential scan of all events. The span prunes the day partitions,
/// and the status tests are a `CASE`, which no index can serve (see [`IdSpan`]).
pub const RECORD_EVENTS: &str = "UPDATE webhook_events AS e \
     SET attempts = GREATEST(e.attempts, r.attempts), status = r.status, \
         response_data = r.response_data, \
         next_attempt_at = r.next_attempt_at, last_error = r.last_error, \
         updated_at = r.updated_at \
     FROM jsonb_to_recordset($1::jsonb) AS r(id bigint, prior integer, attempts integer, \
         status text, response_data jsonb, next_attempt_at timestamptz, last_error text, \
         updated_at timestamptz) \
     WHERE e.id = ANY($2) AND e.id BETWEEN $6 AND $7 AND e.id = r.id \
       AND CASE e.status WHEN $3 THEN e.attempts = r.prior OR r.status = $4 \
                         WHEN $5 THEN r.status = $4 \
                         ELSE false END \
     RETURNING e.id";

/// Whether a record's update applied (`true`), or the event had already moved on (`false`).
pub type Won = bool;

/// Records `records` in one transaction; falls back to one transaction each when the batch is
/// refused for a reason other than the connection, so one bad row cannot fail the others.
pub async fn record_batch(
    db: &DatabaseConnection,
    policy: Option<AutoDisable>,
    records: Vec<AttemptRecord>,
) -> Result<Vec<Result<Won, Arc<DbErr>>>, DbErr> {
    let written = crate::batch::together_or_alone(&records, "attempt records", |batch| {
        record_together(db, policy, batch)
    })
    .await;
    match written {
        Ok(out) => Ok(out.into_iter().map(|r| r.map_err(Arc::new)).collect()),
        Err(error) => {
            let error = Arc::new(error);
            Ok(records.iter().map(|_| Err(error.clone())).collect())
        }
    }
}

async fn record_together(
    db: &DatabaseConnection,
    policy: Option<AutoDisable>,
    records: &[AttemptRecord],
) -> Result<Vec<Won>, DbErr> {
    let Some(span) = IdSpan::of(records.iter().map(|r| r.event_id)) else {
        return Ok(Vec::new());
    };
    // The worker's pool commits asynchronously (`process::connect_worker`): safe under
    // at-least-once, a lost commit only means the attempt runs again.
    let txn = db.begin().await?;
    lock_in_order(&txn, records, span).await?;
    insert_attempts(&txn, records.iter().map(|r| &r.row)).await?;

    // One record per event updates it: the first, unless a later one of the same event was
    // delivered (two jobs of one event can race after a crash; the receiver's 2xx is the truth).
    let chosen = chosen_per_event(records);
    let updates: Vec<Value> = chosen
        .values()
        .map(|&i| &records[i])
        .map(|r| {
            json!({
                "id": r.event_id,
                "prior": r.prior_attempts,
                "attempts": r.prior_attempts + 1,
                "status": r.status.as_str(),
                "response_data": r.response_data,
                "next_attempt_at": r.next_attempt_at.map(|t| t.to_rfc3339()),
                "last_error": r.last_error,
                "updated_at": r.now.to_rfc3339(),
            })
        })
        .collect();
    let ids: Vec<EventId> = records.iter().map(|r| r.event_id).collect();
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            RECORD_EVENTS,
            [
                Value::Array(updates).into(),
                ids.into(),
                EventStatus::Pending.as_str().into(),
                EventStatus::Delivered.as_str().into(),
                EventStatus::Failed.as_str().into(),
                span.first.0.into(),
                span.last.0.into(),
            ],
        ))
        .await?;
    let updated: HashSet<EventId> = rows
        .iter()
        .map(|row| row.try_get::<EventId>("", "id"))
        .collect::<Result<_, _>>()?;
    let won: Vec<Won> = records
        .iter()
        .enumerate()
        .map(|(i, r)| updated.contains(&r.event_id) && chosen.get(&r.event_id) == Some(&i))
        .collect();

    let winners = || {
        records
            .iter()
            .zip(&won)
            .filter(|(_, w)| **w)
            .map(|(r, _)| r)
    };
    let jobs: Vec<(EventId, Due)> = winners()
        .filter_map(|r| r.next_attempt_at.map(|at| (r.event_id, Due::At(at))))
        .collect();
    push_jobs(&txn, &jobs).await?;

    // Ordered heads that settled hand their keys on, in this transaction (events were locked
    // above; `release` locks the keys next, then the events it releases).
    let releases: Vec<ordered::Release> = winners().filter_map(|r| r.release.clone()).collect();
    ordered::release(&txn, &releases).await?;

    // Configuration writes in id order, so concurrent batches lock configurations alike. An
    // endpoint with a delivery in this batch did not fail in a row: its failures here do not
    // count.
    let delivered_to: BTreeSet<ConfigId> = winners()
        .filter(|r| r.status == EventStatus::Delivered)
        .map(|r| r.config_id)
        .collect();
    let mut effects: Vec<&AttemptRecord> = winners()
        .filter(|r| r.gone || matches!(r.health, Health::Recovered | Health::Failed { .. }))
        .collect();
    effects.sort_by_key(|r| r.config_id);
    for record in effects {
        if record.gone {
            disable_config(&txn, record.config_id, "the endpoint answered 410 Gone").await?;
            metrics::counter!(crate::metrics::CONFIGS_DISABLED_TOTAL, "reason" => "gone")
                .increment(1);
        }
        match record.health {
            Health::Recovered => recovered(&txn, record.config_id).await?,
            Health::Failed { probe } if !delivered_to.contains(&record.config_id) => {
                failed(&txn, policy, record, probe).await?;
            }
            Health::Failed { .. } | Health::StillHealthy => {}
        }
    }
    txn.commit().await?;
    // The batch is recorded: a failure here must not make it look unrecorded (it would be
    // written again, one record at a time, and lose). The next delivery clears the clock.
    if let Err(error) = clear_failing_clocks(db, &delivered_to).await {
        tracing::warn!(%error, "could not clear the failing clocks of delivered endpoints");
    }
    Ok(won)
}

/// Clears the failing clock of the configurations in `delivered_to` that have one but are not
/// gated: a delivery ends a run of failures, even one loaded before them. Its own short
/// statement after the batch's commit, rather than a lock taken in the batch: the batch would
/// hold the configuration's row until it commits, and the deliveries of every batch after a
/// failure would queue on it. A failure recorded between the commit and this statement is
/// cleared with the others: the count falls one short, and the gate closes one failure later.
/// A gated endpoint is left to its probe, whose delivery wakes what is parked behind it.
async fn clear_failing_clocks(
    db: &DatabaseConnection,
    delivered_to: &BTreeSet<ConfigId>,
) -> Result<(), DbErr> {
    if delivered_to.is_empty() {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE webhook_configs SET failing_since = NULL, failed_attempts = 0 \
         WHERE id = ANY($1) AND failing_since IS NOT NULL AND failed_attempts < $2 \
           AND probe_until IS NULL",
        [
            delivered_to.iter().copied().collect::<Vec<_>>().into(),
            GATE_AFTER_FAILURES.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A test delivery's event, written once its one attempt is known ([`record_test`]).
pub struct TestRecord<'a> {
    pub message_id: &'a str,
    pub delivery: &'a crate::queue::NewDelivery,
    /// `delivered` or `failed`: a test delivery is never retried.
    pub status: EventStatus,
    pub response_data: &'a Value,
    pub last_error: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// Writes a test delivery's event in its final state and its attempt row (made by `attempt`
/// from the new event's id) in one transaction; returns the event's id. Test deliveries leave
/// the endpoint's health alone.
pub async fn record_test(
    db: &DatabaseConnection,
    record: TestRecord<'_>,
    attempt: impl FnOnce(EventId) -> AttemptRow,
) -> Result<EventId, DbErr> {
    let txn = db.begin().await?;
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO webhook_events \
               (id, message_id, direction, source, event_type, payload, status, attempts, \
                attempt_base, webhook_config_id, response_data, last_error, created_at, \
                updated_at) \
             VALUES (webhook_event_id($10), $1, $2, $3, $4, $5, $6, 1, 0, $7, $8, $9, $10, $11) \
             RETURNING id",
            [
                record.message_id.into(),
                entity::Direction::Outbound.as_str().into(),
                record.delivery.source.as_str().into(),
                record.delivery.event_type.as_str().into(),
                record.delivery.payload.clone().into(),
                record.status.as_str().into(),
                record.delivery.config_id.into(),
                record.response_data.clone().into(),
                record.last_error.map(str::to_owned).into(),
                record.created_at.into(),
                record.now.into(),
            ],
        ))
        .await?
        .ok_or(DbErr::RecordNotInserted)?;
    let event_id: EventId = row.try_get("", "id")?;
    insert_attempts(&txn, [&attempt(event_id)]).await?;
    txn.commit().await?;
    Ok(event_id)
}

/// Locks what `records` may write in the one order every writer of configurations and their
/// events follows: the configurations they may change (by id), then their events (by id).
///
/// The api deactivates a configuration by locking its row, then its pending events by id; a
/// batch that locked an event first and then waited for that configuration would deadlock it.
async fn lock_in_order(
    txn: &impl ConnectionTrait,
    records: &[AttemptRecord],
    span: IdSpan,
) -> Result<(), DbErr> {
    let configs: BTreeSet<ConfigId> = records
        .iter()
        .filter(|r| r.gone || matches!(r.health, Health::Recovered | Health::Failed { .. }))
        .map(|r| r.config_id)
        .collect();
    if !configs.is_empty() {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM webhook_configs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            [Vec::from_iter(configs).into()],
        ))
        .await?;
    }
    let events: BTreeSet<EventId> = records.iter().map(|r| r.event_id).collect();
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        LOCK_EVENTS,
        [
            Vec::from_iter(events).into(),
            span.first.0.into(),
            span.last.0.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The smallest and largest of a batch's event ids, bound beside its `id = ANY($n)`.
///
/// The worker plans each statement once per connection (generic plans), and PostgreSQL prunes
/// partitions by an array parameter only at planning: `id = ANY($n)` alone reads every day
/// partition (today, the days ahead, every retained day), and the planner may probe a day by an
/// index that leads with `status`, rereading that status' entries once per id. A range of
/// scalar parameters is pruned when the statement starts, to the days the batch spans (one,
/// almost always).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSpan {
    pub first: EventId,
    pub last: EventId,
}

impl IdSpan {
    /// The span of `ids`; `None` when there are none.
    pub fn of(ids: impl IntoIterator<Item = EventId>) -> Option<Self> {
        ids.into_iter().fold(None, |span, id| {
            Some(match span {
                None => Self {
                    first: id,
                    last: id,
                },
                Some(Self { first, last }) => Self {
                    first: Ord::min(first, id),
                    last: Ord::max(last, id),
                },
            })
        })
    }
}

/// Locks a batch's events (`$1`) in id order; `$2`/`$3` their [`IdSpan`].
pub const LOCK_EVENTS: &str = "SELECT id FROM webhook_events \
    WHERE id = ANY($1) AND id BETWEEN $2 AND $3 ORDER BY id FOR NO KEY UPDATE";

/// For each event in `records`, the index of the record that updates it: its first record,
/// or the first delivered one when there is one.
fn chosen_per_event(records: &[AttemptRecord]) -> std::collections::BTreeMap<EventId, usize> {
    let mut chosen = std::collections::BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        let entry = chosen.entry(record.event_id).or_insert(i);
        if record.status == EventStatus::Delivered
            && records[*entry].status != EventStatus::Delivered
        {
            *entry = i;
        }
    }
    chosen
}

/// Clears a recovered endpoint's failing clock and probe slot, and sets going the deliveries
/// parked behind its probe.
async fn recovered(txn: &impl ConnectionTrait, config_id: ConfigId) -> Result<(), DbErr> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE webhook_configs SET failing_since = NULL, failed_attempts = 0, probe_until = NULL \
         WHERE id = $1",
        [config_id.into()],
    ))
    .await?;
    let woken = parked::wake(txn, config_id, parked::WAKE_CHUNK).await?;
    tracing::info!(config_id = config_id.0, woken, "endpoint recovered");
    Ok(())
}

pub use crate::queue::parked::GATE_AFTER_FAILURES;

/// The longest a gated endpoint is left alone between probes.
pub const MAX_HOLD_SECS: i32 = 300;

/// Counts a failed attempt on the endpoint's clock and disables the configuration once it has
/// failed for [`AutoDisable::after`] with at least [`AutoDisable::min_failures`] attempts.
///
/// From [`GATE_AFTER_FAILURES`] in a row the endpoint is gated. The failure that gates it, and
/// each failed probe after, holds the endpoint for a quarter of the time it has been failing
/// (at least 1 s, at most [`MAX_HOLD_SECS`]: a backoff that grows with the outage) and
/// appoints the parked delivery with the fewest attempts to probe when the hold ends
/// ([`parked::probe_at`]). A retry's failure (the engine lets retries keep their own schedule)
/// counts but leaves the hold alone: a delivery that fails every time (a payload the receiver
/// rejects, a request that always hangs) must not keep a working endpoint gated.
/// Failures of attempts that were already under way when the gate closed count, but leave the
/// hold alone.
async fn failed(
    txn: &impl ConnectionTrait,
    policy: Option<AutoDisable>,
    record: &AttemptRecord,
    probe: bool,
) -> Result<(), DbErr> {
    let (config_id, now) = (record.config_id, record.now);
    // Without a policy (or with one longer than the calendar), no cutoff: `failing_since <=
    // NULL` never holds, so nothing is disabled. A sentinel date would not do: PostgreSQL
    // refuses timestamps before 4713 BC.
    let (cutoff, min_failures, reason): (Option<DateTime<Utc>>, _, _) = match policy {
        Some(policy) => (
            chrono::Duration::from_std(policy.after)
                .ok()
                .and_then(|after| now.checked_sub_signed(after)),
            policy.min_failures,
            format!(
                "every delivery failed for {} hours (at least {} attempts)",
                fmt_hours(policy.after),
                policy.min_failures
            ),
        ),
        None => (None, i32::MAX, String::new()),
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            // The row is locked (`lock_in_order`), so `old` is its current version and the
            // decision is made on current values.
            "UPDATE webhook_configs AS c \
             SET failing_since = COALESCE(c.failing_since, $2), \
                 failed_attempts = c.failed_attempts + 1, \
                 probe_until = CASE \
                     WHEN c.failed_attempts + 1 < $9 THEN NULL \
                     WHEN {REHOLD} \
                     THEN $2 + LEAST($10, GREATEST(1, \
                              extract(epoch FROM $2 - COALESCE(c.failing_since, $2)) / 4)) \
                          * interval '1 second' \
                     ELSE c.probe_until END, \
                 status = CASE WHEN {DUE} THEN $6 ELSE c.status END, \
                 disabled_reason = CASE WHEN {DUE} THEN $5 ELSE c.disabled_reason END, \
                 disabled_at = CASE WHEN {DUE} THEN $2 ELSE c.disabled_at END, \
                 updated_at = CASE WHEN {DUE} THEN $2 ELSE c.updated_at END \
             FROM webhook_configs AS old \
             WHERE c.id = $1 AND old.id = c.id \
             RETURNING c.status = $6 AND c.disabled_at = $2 AS disable, \
                 CASE WHEN c.failed_attempts >= $9 AND {REHOLD} THEN c.probe_until END \
                     AS hold_ends"
                .replace(
                    "{DUE}",
                    "(c.status = $7 AND c.failed_attempts + 1 >= $3 AND c.failing_since <= $4)",
                )
                .replace(
                    "{REHOLD}",
                    "($8 OR old.probe_until IS NULL OR old.probe_until < $2)",
                ),
            [
                config_id.into(),
                now.into(),
                min_failures.into(),
                cutoff.into(),
                reason.into(),
                ConfigStatus::Disabled.as_str().into(),
                ConfigStatus::Active.as_str().into(),
                probe.into(),
                GATE_AFTER_FAILURES.into(),
                MAX_HOLD_SECS.into(),
            ],
        ))
        .await?;
    let (disabled, hold_ends) = match row {
        Some(row) => (
            row.try_get::<bool>("", "disable")?,
            row.try_get::<Option<DateTime<Utc>>>("", "hold_ends")?,
        ),
        None => (false, None),
    };
    if let (false, Some(at)) = (disabled, hold_ends) {
        parked::probe_at(txn, config_id, at).await?;
    }
    if disabled {
        parked::cancel(
            txn,
            config_id,
            "configuration disabled: failing continuously",
        )
        .await?;
        metrics::counter!(crate::metrics::CONFIGS_DISABLED_TOTAL, "reason" => "failing")
            .increment(1);
        tracing::warn!(
            config_id = config_id.0,
            "webhook config disabled: failing continuously"
        );
    }
    Ok(())
}

async fn disable_config(
    conn: &impl ConnectionTrait,
    config_id: ConfigId,
    reason: &str,
) -> Result<(), DbErr> {
    webhook_configs::Entity::update_many()
        .col_expr(
            webhook_configs::Column::Status,
            Expr::value(ConfigStatus::Disabled),
        )
        .col_expr(webhook_configs::Column::DisabledReason, Expr::value(reason))
        .col_expr(webhook_configs::Column::DisabledAt, Expr::value(Utc::now()))
        .col_expr(webhook_configs::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook_configs::Column::Id.eq(config_id))
        .filter(webhook_configs::Column::Status.eq(ConfigStatus::Active))
        .exec(conn)
        .await?;
    parked::cancel(conn, config_id, reason).await?;
    tracing::warn!(config_id = config_id.0, reason, "webhook config disabled");
    Ok(())
}

/// Hours as a short decimal: `120`, `0.5`.
fn fmt_hours(d: Duration) -> String {
    let hours = d.as_secs_f64() / 3600.0;
    let text = format!("{hours:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_print_as_short_decimals() {
        assert_eq!(fmt_hours(Duration::from_secs(120 * 3600)), "120");
        assert_eq!(fmt_hours(Duration::from_secs(1800)), "0.5");
        assert_eq!(fmt_hours(Duration::from_secs_f64(1.8)), "0.0005");
    }

    #[test]
    fn an_id_span_runs_from_the_smallest_id_to_the_largest_in_any_order() {
        let span = IdSpan::of([EventId(7), EventId(3), EventId(9), EventId(5)]);
        assert_eq!(
            span,
            Some(IdSpan {
                first: EventId(3),
                last: EventId(9)
            })
        );
    }

    #[test]
    fn no_ids_have_no_span() {
        assert_eq!(IdSpan::of([]), None);
    }
}
