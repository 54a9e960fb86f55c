//! Runs one delivery: load the event and its configuration, make the HTTP attempt, then record
//! the outcome and schedule the next attempt in one short transaction. No transaction is held
//! across the network call, and every write is guarded by "only if still in flight", so a late or
//! duplicate job cannot overwrite a newer state.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    ConfigStatus, EventStatus, ResponseData, webhook_attempts, webhook_configs, webhook_events,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, TransactionTrait,
};
use serde::Serialize;

use crate::attempt::{AttemptOutcome, DeliveryRequest, Verdict, attempt};
use crate::http_client::DeliveryClient;
use crate::job::DeliveryJob;
use crate::queue::push_jobs;
use crate::retry::next_delay;
use crate::signing::SigningKey;

/// Failure of the engine itself (database), never of a receiver.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Whether a failed attempt may schedule another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A queued delivery: failures retry per the configuration's policy.
    Queued,
    /// The test endpoint: exactly one attempt, recorded as `delivered` or `failed`.
    Once,
}

/// The result of running one delivery.
#[derive(Debug)]
pub enum Processed {
    /// The event was no longer pending (already delivered by a duplicate job, or cancelled).
    Skipped,
    /// The configuration is gone or not active; the event is now `cancelled`.
    Cancelled,
    /// An attempt was made and recorded.
    Attempted {
        outcome: AttemptOutcome,
        status: EventStatus,
        next_attempt_at: Option<DateTime<Utc>>,
    },
}

/// The Standard Webhooks envelope every delivery carries.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a serde_json::Value,
}

/// What a worker (or the api's test endpoint) needs to run deliveries.
pub struct Engine {
    pub db: DatabaseConnection,
    pub client: DeliveryClient,
}

impl Engine {
    /// Runs one queued job; `Err` only when the database failed (apalis then re-runs the job).
    pub async fn run_job(&self, job: DeliveryJob) -> Result<(), EngineError> {
        self.deliver(job.event_id, Mode::Queued).await.map(|_| ())
    }

    /// Delivers the pending outbound event `event_id` once and records the outcome.
    pub async fn deliver(&self, event_id: i64, mode: Mode) -> Result<Processed, EngineError> {
        let Some((event, config)) = webhook_events::Entity::find_by_id(event_id)
            .find_also_related(webhook_configs::Entity)
            .one(&self.db)
            .await?
        else {
            return Ok(Processed::Skipped);
        };
        if event.status != EventStatus::Pending {
            return Ok(Processed::Skipped);
        }
        // A test delivery may target an inactive configuration; queued ones may not.
        let Some(config) =
            config.filter(|c| mode == Mode::Once || c.status == ConfigStatus::Active)
        else {
            self.cancel(&event).await?;
            metrics::counter!("wirehook_deliveries_total", "result" => "cancelled").increment(1);
            return Ok(Processed::Cancelled);
        };
        let request = build_request(&event, &config);
        let outcome = match &request {
            Ok(req) => attempt(&self.client, req).await,
            Err(e) => AttemptOutcome::failed_before_sending(e.to_string()),
        };
        self.record(&event, &config, outcome, mode).await
    }

    async fn cancel(&self, event: &webhook_events::Model) -> Result<(), EngineError> {
        webhook_events::Entity::update_many()
            .col_expr(webhook_events::Column::Status, Expr::value("cancelled"))
            .col_expr(
                webhook_events::Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                webhook_events::Column::LastError,
                Expr::value("configuration deleted or not active"),
            )
            .col_expr(webhook_events::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(webhook_events::Column::Id.eq(event.id))
            .filter(webhook_events::Column::Status.eq(EventStatus::Pending))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn record(
        &self,
        event: &webhook_events::Model,
        config: &webhook_configs::Model,
        outcome: AttemptOutcome,
        mode: Mode,
    ) -> Result<Processed, EngineError> {
        let now = Utc::now();
        let attempt_no = event.attempts + 1;
        let in_series = u32::try_from(attempt_no - event.attempt_base).unwrap_or(0);
        let verdict = outcome.verdict();
        let (status, next_attempt_at) = match verdict {
            Verdict::Delivered => (EventStatus::Delivered, None),
            Verdict::Gone => (EventStatus::Failed, None),
            Verdict::Retry
                if mode == Mode::Once || in_series >= config.retry_config.max_attempts =>
            {
                (EventStatus::Failed, None)
            }
            Verdict::Retry => {
                let jitter = rand::random_range(-1.0..=1.0);
                let delay = next_delay(
                    in_series.max(1),
                    &config.retry_config,
                    outcome.retry_after,
                    jitter,
                );
                let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                (EventStatus::Pending, Some(now + delay))
            }
        };
        let error_text = outcome
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.kind.as_str(), e.message));
        let response = ResponseData {
            status_code: outcome.status_code,
            body: outcome.response_body.clone(),
            headers: outcome.response_headers.clone(),
            timing: millis(outcome.duration),
            truncated: outcome.truncated,
            error: error_text.clone(),
        };

        let txn = self.db.begin().await?;
        // Safe under at-least-once: a lost commit only means the attempt runs again.
        txn.execute_unprepared("SET LOCAL synchronous_commit = off")
            .await?;
        webhook_attempts::ActiveModel {
            event_id: Set(event.id),
            attempt: Set(attempt_no),
            request_headers: Set(serde_json::to_value(&outcome.request_headers).unwrap_or_default()),
            status_code: Set(outcome.status_code.map(i32::from)),
            response_headers: Set(Some(serde_json::to_value(&outcome.response_headers).unwrap_or_default())),
            response_body: Set(Some(outcome.response_body.clone())),
            truncated: Set(outcome.truncated),
            duration_ms: Set(i32::try_from(millis(outcome.duration)).unwrap_or(i32::MAX)),
            error_kind: Set(outcome.error.as_ref().map(|e| e.kind.as_str().to_owned())),
            error_message: Set(outcome.error.as_ref().map(|e| e.message.clone())),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let updated = webhook_events::Entity::update_many()
            .col_expr(webhook_events::Column::Attempts, Expr::value(attempt_no))
            .col_expr(
                webhook_events::Column::Status,
                Expr::value(status_text(status)),
            )
            .col_expr(
                webhook_events::Column::ResponseData,
                Expr::value(serde_json::to_value(&response).unwrap_or_default()),
            )
            .col_expr(
                webhook_events::Column::NextAttemptAt,
                Expr::value(next_attempt_at),
            )
            .col_expr(
                webhook_events::Column::LastError,
                Expr::value(last_error(&outcome, error_text)),
            )
            .col_expr(webhook_events::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_events::Column::Id.eq(event.id))
            .filter(webhook_events::Column::Status.eq(EventStatus::Pending))
            .filter(webhook_events::Column::Attempts.eq(event.attempts))
            .exec(&txn)
            .await?;
        let won = updated.rows_affected == 1;
        if won && let Some(at) = next_attempt_at {
            push_jobs(&txn, &[(event.id, at)]).await?;
        }
        if won && verdict == Verdict::Gone {
            disable_config(&txn, config.id, "the endpoint answered 410 Gone").await?;
        }
        txn.commit().await?;

        let result = match (won, status) {
            (false, _) => "superseded",
            (true, EventStatus::Delivered) => "delivered",
            (true, EventStatus::Pending) => "retry_scheduled",
            (true, _) => "failed",
        };
        metrics::counter!("wirehook_deliveries_total", "result" => result).increment(1);
        tracing::debug!(
            event_id = event.id,
            attempt = attempt_no,
            result,
            "delivery attempt recorded"
        );
        Ok(Processed::Attempted {
            outcome,
            status,
            next_attempt_at,
        })
    }
}

fn build_request(
    event: &webhook_events::Model,
    config: &webhook_configs::Model,
) -> Result<DeliveryRequest, crate::signing::SecretError> {
    let keys = vec![SigningKey::from_secret(&config.secret)?];
    let envelope = Envelope {
        event_type: &event.event_type,
        timestamp: event
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        data: &event.payload,
    };
    Ok(DeliveryRequest {
        url: config.url.clone(),
        msg_id: event.message_id.clone(),
        timestamp: Utc::now().timestamp(),
        body: serde_json::to_vec(&envelope).unwrap_or_default().into(),
        keys,
        headers: config.headers.0.clone(),
    })
}

async fn disable_config(
    conn: &impl ConnectionTrait,
    config_id: i64,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    webhook_configs::Entity::update_many()
        .col_expr(webhook_configs::Column::Status, Expr::value("disabled"))
        .col_expr(webhook_configs::Column::DisabledReason, Expr::value(reason))
        .col_expr(webhook_configs::Column::DisabledAt, Expr::value(Utc::now()))
        .col_expr(webhook_configs::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook_configs::Column::Id.eq(config_id))
        .filter(webhook_configs::Column::Status.eq(ConfigStatus::Active))
        .exec(conn)
        .await?;
    tracing::warn!(config_id, reason, "webhook config disabled");
    Ok(())
}

fn last_error(outcome: &AttemptOutcome, error_text: Option<String>) -> Option<String> {
    match outcome.status_code {
        Some(code) if !(200..300).contains(&code) => Some(format!("receiver answered HTTP {code}")),
        Some(_) => None,
        None => error_text,
    }
}

fn status_text(status: EventStatus) -> &'static str {
    match status {
        EventStatus::Delivered => "delivered",
        EventStatus::Pending => "pending",
        _ => "failed",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
