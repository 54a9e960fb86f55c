//! Runs one delivery: load the event and its configuration, make the HTTP attempt, then record
//! the outcome and schedule the next attempt. Loads and records of concurrent deliveries are
//! batched ([`crate::store`]): one query loads many, one short transaction records many. No
//! transaction is held across the network call, and every write is guarded by "only if still in
//! flight", so a late or duplicate job cannot overwrite a newer state.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    ConfigId, ConfigStatus, EventId, EventStatus, ResponseData, webhook_attempts, webhook_configs,
    webhook_events,
};
use futures::FutureExt;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, Statement, TransactionTrait,
};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::attempt::{AttemptOutcome, DeliveryRequest, Verdict, attempt};
use crate::batch::{BatchError, Batcher};
use crate::http_client::DeliveryClient;
use crate::job::DeliveryJob;
use crate::queue::{Due, push_jobs};
use crate::retry::next_delay;
use crate::secrets::Keyring;
use crate::signing::SigningKey;
pub use crate::store::AutoDisable;
use crate::store::{self, AttemptRecord, Health, Loaded, Won};

/// Failure of the engine itself (database), never of a receiver.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// A batched load or record failed (the error is shared by every job of the batch).
    #[error("database: {0}")]
    Batch(Arc<sea_orm::DbErr>),
    /// A delivery panicked (a bug); the other events of its job were still delivered.
    #[error("a delivery panicked: {0}")]
    Panicked(String),
}

impl From<BatchError> for EngineError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::Failed(error) => Self::Batch(error),
            BatchError::Stopped => Self::Db(sea_orm::DbErr::Custom(error.to_string())),
        }
    }
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

/// How long a paced delivery waits before it looks again whether its endpoint is free.
const PACE_RECHECK: Duration = Duration::from_secs(2);

/// Deliveries in flight at once for an engine made with [`Engine::new`].
pub const DEFAULT_IN_FLIGHT: usize = 32;

/// Most deliveries one batched load or record handles.
const MAX_BATCH: usize = 128;

/// Batched loads or records in flight at once; later items gather into the next batch.
const PARALLEL_FLUSHES: usize = 1;

/// What a worker (or the api's test endpoint) needs to run deliveries.
pub struct Engine {
    pub db: DatabaseConnection,
    pub client: DeliveryClient,
    /// Deliveries in flight at once across this engine's jobs (`WORKER_CONCURRENCY`).
    slots: Semaphore,
    loader: Batcher<EventId, Option<Loaded>>,
    recorder: Batcher<AttemptRecord, Result<Won, Arc<sea_orm::DbErr>>>,
}

impl Engine {
    /// The engine a worker replica runs with `settings`: its delivery client and its
    /// `AUTO_DISABLE_AFTER_HOURS` policy.
    pub fn from_settings(
        db: DatabaseConnection,
        settings: &crate::settings::WorkerSettings,
    ) -> Result<Self, crate::http_client::ClientBuildError> {
        let client = DeliveryClient::new(settings.client_config())?;
        let policy = settings.auto_disable_after.map(|after| AutoDisable {
            after,
            ..AutoDisable::default()
        });
        Ok(Self::with_policy(
            db,
            client,
            settings.common.keyring.clone(),
            policy,
            settings.concurrency,
        ))
    }

    /// An engine with the default [`AutoDisable`] policy and up to [`DEFAULT_IN_FLIGHT`]
    /// deliveries in flight.
    pub fn new(db: DatabaseConnection, client: DeliveryClient, keyring: Arc<Keyring>) -> Self {
        Self::with_policy(
            db,
            client,
            keyring,
            Some(AutoDisable::default()),
            DEFAULT_IN_FLIGHT,
        )
    }

    /// An engine that disables failing endpoints per `auto_disable` (`None`: never) and runs at
    /// most `in_flight` deliveries at once; `keyring` opens the stored signing secrets, once per
    /// configuration per loaded batch. Spawns its batching tasks, so it must be called inside a
    /// Tokio runtime.
    pub fn with_policy(
        db: DatabaseConnection,
        client: DeliveryClient,
        keyring: Arc<Keyring>,
        auto_disable: Option<AutoDisable>,
        in_flight: usize,
    ) -> Self {
        let loader = {
            let db = db.clone();
            Batcher::spawn(MAX_BATCH, PARALLEL_FLUSHES, move |ids| {
                let db = db.clone();
                let keyring = keyring.clone();
                async move {
                    let mut loaded = store::load_batch(&db, ids).await?;
                    crate::secrets::reveal_loaded(&keyring, &mut loaded);
                    Ok(loaded)
                }
            })
        };
        let recorder = {
            let db = db.clone();
            Batcher::spawn(MAX_BATCH, PARALLEL_FLUSHES, move |records| {
                let db = db.clone();
                async move { store::record_batch(&db, auto_disable, records).await }
            })
        };
        Self {
            db,
            client,
            slots: Semaphore::new(in_flight.max(1)),
            loader,
            recorder,
        }
    }

    /// Runs one queued job: delivers its events concurrently, within the engine's in-flight
    /// limit. `Err` when the database failed for any of them; apalis then re-runs the job, and
    /// the events it already delivered are skipped.
    pub async fn run_job(&self, job: &DeliveryJob) -> Result<(), EngineError> {
        let runs = job.event_ids().iter().map(|&event_id| async move {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| BatchError::Stopped)?;
            // A panic must not take the job's other deliveries down with it (they would be
            // dropped mid-flight, and their events left without a job).
            match AssertUnwindSafe(self.deliver(event_id, Mode::Queued))
                .catch_unwind()
                .await
            {
                Ok(result) => result,
                Err(panic) => {
                    let message = crate::process::panic_message(panic.as_ref());
                    tracing::error!(event_id = event_id.0, %message, "delivery panicked");
                    Err(EngineError::Panicked(message))
                }
            }
        });
        let results = futures::future::join_all(runs).await;
        match results.into_iter().find_map(Result::err) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Delivers the pending outbound event `event_id` once and records the outcome.
    pub async fn deliver(&self, event_id: EventId, mode: Mode) -> Result<Processed, EngineError> {
        let Some((event, config)) = self.loader.call(event_id).await? else {
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
            && !self.claim_probe(ConfigId(config.id)).await?
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
    async fn claim_probe(&self, config_id: ConfigId) -> Result<bool, EngineError> {
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
            push_jobs(&txn, &[(EventId(event.id), Due::At(retry_at))]).await?;
        }
        txn.commit().await?;
        metrics::counter!(crate::metrics::DELIVERIES_TOTAL, "result" => "paced").increment(1);
        Ok(Processed::Paced { retry_at })
    }

    async fn cancel(&self, event: &webhook_events::Model) -> Result<(), EngineError> {
        webhook_events::Entity::update_many()
            .col_expr(
                webhook_events::Column::Status,
                Expr::value(EventStatus::Cancelled),
            )
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
        let delivered = verdict == Verdict::Delivered;
        let was_failing = config.failing_since.is_some() || config.probe_until.is_some();
        let health = match mode {
            Mode::Once => None,
            Mode::Queued if delivered && was_failing => Some(Health::Recovered),
            Mode::Queued if delivered => Some(Health::StillHealthy),
            Mode::Queued => Some(Health::Failed),
        };
        let record = AttemptRecord {
            event_id: EventId(event.id),
            config_id: ConfigId(config.id),
            prior_attempts: event.attempts,
            row: webhook_attempts::ActiveModel {
                event_id: Set(event.id),
                attempt: Set(attempt_no),
                request_headers: Set(
                    serde_json::to_value(&outcome.request_headers).unwrap_or_default()
                ),
                status_code: Set(outcome.status_code.map(i32::from)),
                response_headers: Set(Some(
                    serde_json::to_value(&outcome.response_headers).unwrap_or_default(),
                )),
                response_body: Set(Some(outcome.response_body.clone())),
                truncated: Set(outcome.truncated),
                duration_ms: Set(i32::try_from(millis(outcome.duration)).unwrap_or(i32::MAX)),
                error_kind: Set(outcome.error.as_ref().map(|e| e.kind.as_str().to_owned())),
                error_message: Set(outcome.error.as_ref().map(|e| e.message.clone())),
                created_at: Set(now),
                ..Default::default()
            },
            status,
            response_data: serde_json::to_value(&response).unwrap_or_default(),
            next_attempt_at,
            last_error: last_error(&outcome, error_text),
            now,
            gone: verdict == Verdict::Gone,
            health,
        };
        let won = self
            .recorder
            .call(record)
            .await?
            .map_err(EngineError::Batch)?;

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

fn last_error(outcome: &AttemptOutcome, error_text: Option<String>) -> Option<String> {
    match outcome.status_code {
        Some(code) if !(200..300).contains(&code) => Some(format!("receiver answered HTTP {code}")),
        Some(_) => None,
        None => error_text,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
