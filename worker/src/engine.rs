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
    DbBackend, EntityTrait, QueryFilter, Statement, TransactionTrait,
};
use serde::Serialize;

use crate::attempt::{AttemptOutcome, DeliveryRequest, Verdict, attempt};
use crate::http_client::DeliveryClient;
use crate::job::DeliveryJob;
use crate::queue::{Due, push_jobs};
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
    /// The endpoint is failing and another attempt to it is in flight: the delivery waits, no
    /// attempt is counted, and a new job runs at `retry_at`.
    Paced { retry_at: DateTime<Utc> },
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

/// How long a paced delivery waits before it looks again whether its endpoint is free.
const PACE_RECHECK: Duration = Duration::from_secs(2);

/// What a worker (or the api's test endpoint) needs to run deliveries.
pub struct Engine {
    pub db: DatabaseConnection,
    pub client: DeliveryClient,
    /// `None` never disables a failing endpoint (it is still paced).
    pub auto_disable: Option<AutoDisable>,
}

impl Engine {
    /// The engine a worker replica runs with `settings`: its delivery client and its
    /// `AUTO_DISABLE_AFTER_HOURS` policy.
    pub fn from_settings(
        db: DatabaseConnection,
        settings: &crate::settings::WorkerSettings,
    ) -> Result<Self, crate::http_client::ClientBuildError> {
        Ok(Self {
            db,
            client: DeliveryClient::new(settings.client_config())?,
            auto_disable: settings.auto_disable_after.map(|after| AutoDisable {
                after,
                ..AutoDisable::default()
            }),
        })
    }

    /// An engine with the default [`AutoDisable`] policy.
    pub fn new(db: DatabaseConnection, client: DeliveryClient) -> Self {
        Self {
            db,
            client,
            auto_disable: Some(AutoDisable::default()),
        }
    }

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
            metrics::counter!(crate::metrics::DELIVERIES_TOTAL, "result" => "cancelled")
                .increment(1);
            return Ok(Processed::Cancelled);
        };
        if mode == Mode::Queued
            && config.failing_since.is_some()
            && !self.claim_probe(config.id).await?
        {
            return self.pace(&event).await;
        }
        let request = build_request(&event, &config, Utc::now());
        let outcome = match &request {
            Ok(req) => attempt(&self.client, req).await,
            Err(e) => AttemptOutcome::failed_before_sending(e.to_string()),
        };
        metrics::histogram!(
            crate::metrics::ATTEMPT_DURATION,
            "status_class" => crate::metrics::status_class(outcome.status_code)
        )
        .record(outcome.duration.as_secs_f64());
        self.record(&event, &config, outcome, mode).await
    }

    /// Takes the failing endpoint's single in-flight slot; `false` when another attempt holds
    /// it. The lease outlives the longest attempt, so a dead worker's claim expires by itself.
    async fn claim_probe(&self, config_id: i64) -> Result<bool, EngineError> {
        let lease = self.client.timeout() + Duration::from_secs(15);
        let claimed = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE webhook_configs \
                 SET probe_until = now() + $2 * interval '1 millisecond' \
                 WHERE id = $1 AND (failing_since IS NULL OR probe_until IS NULL OR probe_until < now())",
                [config_id.into(), (millis(lease) as f64).into()],
            ))
            .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Puts the delivery back in the queue without an attempt: its endpoint is busy failing.
    async fn pace(&self, event: &webhook_events::Model) -> Result<Processed, EngineError> {
        let jitter = rand::random_range(0..1000);
        let retry_at = Utc::now()
            + chrono::Duration::from_std(PACE_RECHECK).unwrap_or_default()
            + chrono::Duration::milliseconds(jitter);
        let txn = self.db.begin().await?;
        txn.execute_unprepared("SET LOCAL synchronous_commit = off")
            .await?;
        let updated = webhook_events::Entity::update_many()
            .col_expr(webhook_events::Column::NextAttemptAt, Expr::value(retry_at))
            .filter(webhook_events::Column::Id.eq(event.id))
            .filter(webhook_events::Column::Status.eq(EventStatus::Pending))
            .filter(webhook_events::Column::Attempts.eq(event.attempts))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 1 {
            push_jobs(&txn, &[(event.id, Due::At(retry_at))]).await?;
        }
        txn.commit().await?;
        metrics::counter!(crate::metrics::DELIVERIES_TOTAL, "result" => "paced").increment(1);
        Ok(Processed::Paced { retry_at })
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
            push_jobs(&txn, &[(event.id, Due::At(at))]).await?;
        }
        if won && verdict == Verdict::Gone {
            disable_config(&txn, config.id, "the endpoint answered 410 Gone").await?;
            metrics::counter!(crate::metrics::CONFIGS_DISABLED_TOTAL, "reason" => "gone")
                .increment(1);
        }
        if won && mode == Mode::Queued {
            self.track_health(&txn, config, verdict == Verdict::Delivered, now)
                .await?;
        }
        txn.commit().await?;

        let result = match (won, status) {
            (false, _) => "superseded",
            (true, EventStatus::Delivered) => "delivered",
            (true, EventStatus::Pending) => "retry_scheduled",
            (true, _) => "failed",
        };
        metrics::counter!(crate::metrics::DELIVERIES_TOTAL, "result" => result).increment(1);
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

impl Engine {
    /// Records an attempt's effect on the endpoint's health, in the attempt's transaction.
    ///
    /// A delivery clears the failing clock and frees the probe slot (one statement, only when
    /// the endpoint was failing). A failure starts the clock or counts on it, frees the slot, and
    /// disables the configuration once it has failed for [`AutoDisable::after`] with at least
    /// [`AutoDisable::min_failures`] attempts.
    async fn track_health(
        &self,
        txn: &impl ConnectionTrait,
        config: &webhook_configs::Model,
        delivered: bool,
        now: DateTime<Utc>,
    ) -> Result<(), sea_orm::DbErr> {
        if delivered {
            if config.failing_since.is_some() || config.probe_until.is_some() {
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE webhook_configs \
                     SET failing_since = NULL, failed_attempts = 0, probe_until = NULL \
                     WHERE id = $1",
                    [config.id.into()],
                ))
                .await?;
                tracing::info!(config_id = config.id, "endpoint recovered");
            }
            return Ok(());
        }
        // Without a policy, a cutoff before any failure never disables.
        let (cutoff, min_failures, reason) = match self.auto_disable {
            Some(policy) => (
                chrono::Duration::from_std(policy.after)
                    .ok()
                    .and_then(|after| now.checked_sub_signed(after))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
                policy.min_failures,
                format!(
                    "every delivery failed for {} hours (at least {} attempts)",
                    fmt_hours(policy.after),
                    policy.min_failures
                ),
            ),
            None => (DateTime::<Utc>::MIN_UTC, i32::MAX, String::new()),
        };
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                // SET expressions see the row as locked (its latest version when attempts race),
                // so the decision is made on current values.
                "UPDATE webhook_configs \
                 SET failing_since = COALESCE(failing_since, $2), \
                     failed_attempts = failed_attempts + 1, \
                     probe_until = NULL, \
                     status = CASE WHEN {DUE} THEN 'disabled' ELSE status END, \
                     disabled_reason = CASE WHEN {DUE} THEN $5 ELSE disabled_reason END, \
                     disabled_at = CASE WHEN {DUE} THEN $2 ELSE disabled_at END, \
                     updated_at = CASE WHEN {DUE} THEN $2 ELSE updated_at END \
                 WHERE id = $1 \
                 RETURNING status = 'disabled' AND disabled_at = $2 AS disable"
                    .replace(
                        "{DUE}",
                        "(status = 'active' AND failed_attempts + 1 >= $3 AND failing_since <= $4)",
                    ),
                [
                    config.id.into(),
                    now.into(),
                    min_failures.into(),
                    cutoff.into(),
                    reason.into(),
                ],
            ))
            .await?;
        let disabled = row
            .map(|r| r.try_get::<bool>("", "disable"))
            .transpose()?
            .unwrap_or(false);
        if disabled {
            metrics::counter!(crate::metrics::CONFIGS_DISABLED_TOTAL, "reason" => "failing")
                .increment(1);
            tracing::warn!(
                config_id = config.id,
                "webhook config disabled: failing continuously"
            );
        }
        Ok(())
    }
}

/// Hours as a short decimal: `120`, `0.5`.
fn fmt_hours(d: Duration) -> String {
    let hours = d.as_secs_f64() / 3600.0;
    let text = format!("{hours:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The signing keys of `config` at `now`: the current secret, then the previous one while its
/// rotation overlap lasts.
fn signing_keys(
    config: &webhook_configs::Model,
    now: DateTime<Utc>,
) -> Result<Vec<SigningKey>, crate::signing::SecretError> {
    let mut keys = vec![SigningKey::from_secret(&config.secret)?];
    if let (Some(previous), Some(until)) =
        (&config.previous_secret, config.previous_secret_expires_at)
        && until > now
    {
        keys.push(SigningKey::from_secret(previous)?);
    }
    Ok(keys)
}

fn build_request(
    event: &webhook_events::Model,
    config: &webhook_configs::Model,
    now: DateTime<Utc>,
) -> Result<DeliveryRequest, crate::signing::SecretError> {
    let keys = signing_keys(config, now)?;
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
        timestamp: now.timestamp(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_print_as_short_decimals() {
        assert_eq!(fmt_hours(Duration::from_secs(120 * 3600)), "120");
        assert_eq!(fmt_hours(Duration::from_secs(1800)), "0.5");
        assert_eq!(fmt_hours(Duration::from_secs_f64(1.8)), "0.0005");
    }
}
