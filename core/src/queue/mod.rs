//! The queue: every statement on `apalis.*` lives under this module. Deliveries enter it here
//! (outbound event rows and their apalis jobs, written together inside the caller's transaction
//! so both commit or neither does, or in the group commit's one statement, [`fan_out`]);
//! replicas claim and finish jobs through [`backend`]; their leases are kept by [`replicas`];
//! the maintenance leader samples it through [`stats`], deletes what finished through
//! [`finished`], and wakes or cancels the deliveries [`parked`] behind failing endpoints;
//! [`ordered`] keeps the deliveries of one ordering key in sequence.
//!
//! apalis workarounds that remain, each behind this module's interface:
//! - Jobs are inserted with SQL (here and in [`fan_out`]), not `push`, which returns no id and
//!   cannot join the caller's transaction.
//! - A receiver's failure never fails the job: the next attempt is a new job due at its time
//!   ([`push_jobs`]), because a failed job is retried at once, `RetryAfterError` ignores its
//!   wait, and the `.retry()` layer retries in memory. apalis' own attempts
//!   ([`INFRA_MAX_ATTEMPTS`]) count only the engine's failures.
//! - [`backend`]: apalis-core's `Persisted` loses a wake-up that arrives during a fetch; the
//!   replicas' backend wakes again after a fetch that started before it.
//! - [`replicas`]: workers are registered with SQL (`register_worker` takes a timestamp type
//!   apalis-postgres does not export), and a stopping or restarted replica hands its locked
//!   jobs back at once instead of waiting for its lease to expire.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{
    ConfigId, ConfigStatus, Direction, EventId, EventStatus, MessageId, Source, webhook_events,
};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement};
use serde::Serialize;
use serde_json::{Value, json};

use crate::job::{DeliveryJob, MAX_EVENTS_PER_JOB, QUEUE};

pub mod backend;
pub mod fan_out;
pub mod finished;
pub mod ordered;
pub mod parked;
pub mod replicas;
pub mod stats;

/// apalis may re-run a job this many times when the engine itself fails (database errors);
/// receiver failures never count here, they schedule a new job instead.
pub const INFRA_MAX_ATTEMPTS: i32 = 25;

/// An outbound delivery to create.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub config_id: ConfigId,
    /// Where the event came from: a provider, or the platform itself.
    pub source: Source,
    pub event_type: String,
    /// The `data` of the delivered envelope.
    pub payload: Value,
    /// The inbound or published event this delivery came from.
    pub parent_event_id: Option<EventId>,
}

/// An outbound event that was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub event_id: EventId,
    pub message_id: String,
}

/// Inserts `pending` outbound events and their jobs (due now, up to [`MAX_EVENTS_PER_JOB`]
/// events each), in one statement per table.
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    deliveries: Vec<NewDelivery>,
) -> Result<Vec<Enqueued>, DbErr> {
    let created = insert_events(conn, deliveries).await?;
    let ids: Vec<EventId> = created.iter().map(|e| e.event_id).collect();
    push_grouped(conn, &ids).await?;
    Ok(created)
}

/// Inserts jobs due now for `event_ids`, [`MAX_EVENTS_PER_JOB`] events to a job.
pub(crate) async fn push_grouped(
    conn: &impl ConnectionTrait,
    event_ids: &[EventId],
) -> Result<(), DbErr> {
    let jobs: Vec<(DeliveryJob, Due)> = event_ids
        .chunks(MAX_EVENTS_PER_JOB)
        .filter_map(|ids| DeliveryJob::batch(ids.to_vec()))
        .map(|job| (job, Due::Now))
        .collect();
    push_delivery_jobs(conn, &jobs).await
}

/// Inserts `pending` outbound events without jobs (the test endpoint delivers them at once),
/// in one statement; returns them in the order given.
pub async fn insert_events(
    conn: &impl ConnectionTrait,
    deliveries: Vec<NewDelivery>,
) -> Result<Vec<Enqueued>, DbErr> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<OutboundRow<'_>> = deliveries
        .iter()
        .map(|d| OutboundRow {
            message_id: MessageId::generate().into_inner(),
            source: d.source.as_str(),
            event_type: &d.event_type,
            payload: &d.payload,
            config_id: d.config_id,
            parent_event_id: d.parent_event_id,
        })
        .collect();
    // The rows travel as one JSON text: no per-row parameters, one prepared statement for any
    // batch size, and the payloads are serialized once, straight from the caller's values.
    let rows_json = serde_json::to_string(&rows).map_err(|e| DbErr::Json(e.to_string()))?;
    let inserted = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "INSERT INTO webhook_events \
               (id, message_id, direction, source, event_type, payload, status, attempts, \
                attempt_base, webhook_config_id, parent_event_id, next_attempt_at, created_at, \
                updated_at) \
             SELECT webhook_event_id($2), r.message_id, $3, r.source, r.event_type, r.payload, \
                    $4, 0, 0, r.config_id, r.parent_event_id, $2, $2, $2 \
             FROM jsonb_to_recordset($1::jsonb) AS r(message_id text, source text, \
                  event_type text, payload jsonb, config_id bigint, parent_event_id bigint) \
             RETURNING id, message_id",
            [
                rows_json.into(),
                Utc::now().into(),
                Direction::Outbound.as_str().into(),
                EventStatus::Pending.as_str().into(),
            ],
        ))
        .await?;
    let mut ids: HashMap<String, EventId> = HashMap::with_capacity(inserted.len());
    for row in inserted {
        ids.insert(row.try_get("", "message_id")?, row.try_get("", "id")?);
    }
    rows.into_iter()
        .map(|r| {
            let event_id = ids
                .get(&r.message_id)
                .copied()
                .ok_or_else(|| DbErr::RecordNotInserted)?;
            Ok(Enqueued {
                event_id,
                message_id: r.message_id,
            })
        })
        .collect()
}

/// One outbound event as [`insert_events`] sends it.
#[derive(Serialize)]
struct OutboundRow<'a> {
    message_id: String,
    source: &'static str,
    event_type: &'a str,
    payload: &'a Value,
    config_id: ConfigId,
    parent_event_id: Option<EventId>,
}

/// When a job is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// At once: the job's `run_at` is the transaction's `now()`, which is what makes apalis'
    /// insert trigger (`run_at <= now()`) notify the replicas, so it starts in milliseconds.
    /// A time taken from the application's clock is later than the transaction's start and
    /// would leave the job to the next poll.
    Now,
    /// At this time (a retry); replicas find it by polling.
    At(DateTime<Utc>),
}

/// Inserts one single-event delivery job per `(event id, due)` in one statement.
pub async fn push_jobs(conn: &impl ConnectionTrait, jobs: &[(EventId, Due)]) -> Result<(), DbErr> {
    let jobs: Vec<(DeliveryJob, Due)> = jobs
        .iter()
        .map(|(event_id, due)| (DeliveryJob::new(*event_id), *due))
        .collect();
    push_delivery_jobs(conn, &jobs).await
}

/// Inserts the delivery jobs `jobs`, each due when it says, in one statement.
pub async fn push_delivery_jobs(
    conn: &impl ConnectionTrait,
    jobs: &[(DeliveryJob, Due)],
) -> Result<(), DbErr> {
    if jobs.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = jobs
        .iter()
        .map(|(job, due)| {
            let job = job.to_payload().to_string();
            let run_at = match due {
                Due::Now => Value::Null,
                Due::At(at) => Value::String(at.to_rfc3339()),
            };
            json!({"id": ulid::Ulid::generate().to_string(), "job": job, "run_at": run_at})
        })
        .collect();
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
         SELECT x->>'id', $2, convert_to(x->>'job', 'UTF8'), 'Pending', 0, $3, \
                COALESCE((x->>'run_at')::timestamptz, now()), 0 \
         FROM jsonb_array_elements($1::jsonb) AS x",
        [Value::Array(rows).into(), QUEUE.into(), INFRA_MAX_ATTEMPTS.into()],
    ))
    .await?;
    Ok(())
}

/// Why an event cannot be retried by hand.
#[derive(Debug, thiserror::Error)]
pub enum RetryRefused {
    #[error("webhook event {0} not found")]
    NotFound(EventId),
    #[error("only outbound events can be retried")]
    NotOutbound,
    #[error(
        "the event is {0}; only failed events (or cancelled ones of an active configuration) can be retried"
    )]
    NotRetryable(&'static str),
    #[error("the event's configuration is gone or not active")]
    ConfigNotActive,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Sets a failed (or cancelled) outbound event back to `pending`, starts a new retry series and
/// queues one attempt now; `attempts` keeps counting. Run it inside a transaction.
pub async fn requeue(
    conn: &impl ConnectionTrait,
    event_id: EventId,
) -> Result<webhook_events::Model, RetryRefused> {
    use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
    // Lock the event row only: FOR UPDATE cannot apply to the nullable side of a join.
    let event = webhook_events::Entity::find_by_id(event_id.0)
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or(RetryRefused::NotFound(event_id))?;
    let config = match event.webhook_config_id {
        Some(id) => {
            entity::webhook_configs::Entity::find_by_id(id)
                .one(conn)
                .await?
        }
        None => None,
    };
    if event.direction != Direction::Outbound {
        return Err(RetryRefused::NotOutbound);
    }
    let config_active = config.is_some_and(|c| c.status == ConfigStatus::Active);
    match event.status {
        EventStatus::Failed | EventStatus::Cancelled if config_active => {}
        EventStatus::Failed | EventStatus::Cancelled => return Err(RetryRefused::ConfigNotActive),
        EventStatus::Pending | EventStatus::Delivered => {
            return Err(RetryRefused::NotRetryable(event.status.as_str()));
        }
        EventStatus::Processed | EventStatus::Ignored | EventStatus::Rejected => {
            return Err(RetryRefused::NotRetryable("not an outbound state"));
        }
    }
    let now = Utc::now();
    let updated = webhook_events::Entity::update_many()
        .col_expr(
            webhook_events::Column::Status,
            sea_orm::sea_query::Expr::value(EventStatus::Pending),
        )
        .col_expr(
            webhook_events::Column::AttemptBase,
            sea_orm::sea_query::Expr::value(event.attempts + 1),
        )
        .col_expr(
            webhook_events::Column::NextAttemptAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .col_expr(
            webhook_events::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(webhook_events::Column::Id.eq(event_id))
        .exec_with_returning(conn)
        .await?;
    push_jobs(conn, &[(event_id, Due::Now)]).await?;
    updated
        .into_iter()
        .next()
        .ok_or(RetryRefused::NotFound(event_id))
}

/// Sets back to `pending`, oldest first, up to `limit` `failed` outbound events of `config_id`
/// created in `[since, until]`, each with a new retry series of `maxAttempts` attempts, the
/// first one due now (keeping its message id and attempt count); returns their ids. Run it
/// inside a transaction; call it again until it returns fewer than `limit`.
///
/// Unlike [`requeue`] (one attempt now, then a series if it fails), the attempt due now is the
/// series' first: `attempt_base` is the attempts made so far.
pub async fn requeue_failed(
    conn: &impl ConnectionTrait,
    config_id: ConfigId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<EventId>, DbErr> {
    let now = Utc::now();
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE webhook_events \
             SET status = $8, attempt_base = attempts, next_attempt_at = $5, \
                 updated_at = $5 \
             WHERE id IN ( \
               SELECT id FROM webhook_events \
               WHERE webhook_config_id = $1 AND direction = $6 AND status = $7 \
                 AND created_at >= $2 AND created_at <= $3 \
               ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id",
            [
                config_id.into(),
                since.into(),
                until.into(),
                i64::from(limit).into(),
                now.into(),
                Direction::Outbound.as_str().into(),
                EventStatus::Failed.as_str().into(),
                EventStatus::Pending.as_str().into(),
            ],
        ))
        .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<EventId>("", "id"))
        .collect::<Result<Vec<_>, _>>()?;
    push_grouped(conn, &ids).await?;
    Ok(ids)
}
