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
    ConfigId, ConfigStatus, EventId, EventStatus, MessageId, OnStuck, ResponseData,
    webhook_configs, webhook_events,
};
use futures::FutureExt;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    Statement,
};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::attempt::{AttemptOutcome, DeliveryRequest, Verdict, attempt};
use crate::batch::{BatchError, Batcher};
use crate::http_client::DeliveryClient;
use crate::job::DeliveryJob;
use crate::queue::{Enqueued, NewDelivery, ordered, parked};
use crate::retry::next_delay;
use crate::secrets::Keyring;
use crate::signing::SigningKey;
pub use crate::store::AutoDisable;
use crate::store::{self, AttemptRecord, AttemptRow, Health, Loaded, Won};

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

/// The result of running one delivery.
#[derive(Debug)]
pub enum Processed {
    /// The event was no longer pending (already delivered by a duplicate job, or cancelled).
    Skipped,
    /// The endpoint is failing and another delivery probes it: this one is parked (pending, no
    /// attempt counted, no job) until the probe's outcome wakes it.
    Parked,
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
    /// Ordered deliveries only: where the event stands in its key, so a receiver can tell a
    /// gap or a late (detached) event.
    #[serde(skip_serializing_if = "Option::is_none")]
    ordering: Option<OrderingOut<'a>>,
}

/// The `ordering` member of an ordered delivery's envelope.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderingOut<'a> {
    key: &'a str,
    /// 1 for the key's first event, then one more per event accepted for the key.
    sequence: i64,
    /// The message id (`webhook-id`) of the key's event before this one; null for the first.
    previous_id: Option<&'a str>,
}

/// What an attempt writes: its row and the event's response fields.
struct Written {
    /// The attempt's row, its event id still unset.
    attempt: AttemptRow,
    response_data: serde_json::Value,
    last_error: Option<String>,
}

impl Written {
    fn of(outcome: &AttemptOutcome, attempt_no: i32, now: DateTime<Utc>) -> Self {
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
        let attempt = AttemptRow {
            event_id: EventId(0),
            attempt: attempt_no,
            request_headers: serde_json::to_value(&outcome.request_headers).unwrap_or_default(),
            status_code: outcome.status_code.map(i32::from),
            response_headers: Some(
                serde_json::to_value(&outcome.response_headers).unwrap_or_default(),
            ),
            response_body: Some(outcome.response_body.clone()),
            truncated: outcome.truncated,
            duration_ms: i32::try_from(millis(outcome.duration)).unwrap_or(i32::MAX),
            error_kind: outcome.error.as_ref().map(|e| e.kind.as_str().to_owned()),
            error_message: outcome.error.as_ref().map(|e| e.message.clone()),
            created_at: now,
        };
        Self {
            attempt,
            response_data: serde_json::to_value(&response).unwrap_or_default(),
            last_error: last_error(outcome, error_text),
        }
    }

    /// The attempt's row, of the event `event_id`.
    fn attempt_row(&self, event_id: EventId) -> AttemptRow {
        AttemptRow {
            event_id,
            ..self.attempt.clone()
        }
    }
}

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
    /// Opens the stored signing secrets (the loader's, and the test delivery's).
    keyring: Arc<Keyring>,
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
            let keyring = keyring.clone();
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
            keyring,
            slots: Semaphore::new(in_flight.max(1)),
            loader,
            recorder,
        }
    }

    /// Runs one queued job: delivers its events concurrently, within the engine's in-flight
    /// limit. `Err` when the database failed for any of them; apalis then re-runs the job, and
    /// the events it already delivered are skipped.
    ///
    /// Memory is bounded by construction: a job holds only event ids, and an event's row (its
    /// payload) is loaded only after its slot is taken, so however many jobs are claimed (256
    /// jobs × 16 events are 4,096 ids) at most `in_flight` payloads are in memory at once.
    pub async fn run_job(&self, job: &DeliveryJob) -> Result<(), EngineError> {
        let runs = job.event_ids().iter().map(|&event_id| async move {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| BatchError::Stopped)?;
            // A panic must not take the job's other deliveries down with it (they would be
            // dropped mid-flight, and their events left without a job).
            match AssertUnwindSafe(self.deliver(event_id))
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

    /// Delivers the pending outbound event `event_id` once and records the outcome; a failure
    /// retries per the configuration's policy.
    pub async fn deliver(&self, event_id: EventId) -> Result<Processed, EngineError> {
        let Some((event, config)) = self.loader.call(event_id).await? else {
            return Ok(Processed::Skipped);
        };
        // Waiting on its ordering key: only the release that makes it the head gives it a
        // job, so a job seen here is stale.
        if event.status != EventStatus::Pending || event.waiting_on_key {
            return Ok(Processed::Skipped);
        }
        let Some(config) = config.filter(|c| c.status == ConfigStatus::Active) else {
            self.cancel(&event).await?;
            metrics::counter!(crate::metrics::DELIVERIES_TOTAL, "result" => "cancelled")
                .increment(1);
            return Ok(Processed::Cancelled);
        };
        // A gated endpoint (failing again and again) takes one new delivery at a time, the
        // probe: one never attempted, or the one appointed for the end of the hold. The other
        // new deliveries park until its outcome; when the park finds the endpoint recovered
        // meanwhile, this delivery goes ahead. Retries of deliveries that already failed keep
        // their own schedule: they are few (those under way when the gate closed), and one that
        // fails every time tells nothing about the endpoint.
        let mut probe = false;
        let gated =
            config.failing_since.is_some() && config.failed_attempts >= store::GATE_AFTER_FAILURES;
        if gated
            && (event.attempts == 0
                || parked::is_appointed(event.next_attempt_at, config.probe_until))
        {
            probe = self.claim_probe(ConfigId(config.id)).await?;
            if !probe && self.park(&event, ConfigId(config.id)).await? {
                return Ok(Processed::Parked);
            }
        }
        let request = build_request(Message::of(&event), &config, Utc::now());
        let outcome = match &request {
            Ok(req) => attempt(&self.client, req).await,
            Err(e) => AttemptOutcome::failed_before_sending(e.to_string()),
        };
        metrics::histogram!(
            crate::metrics::ATTEMPT_DURATION,
            "status_class" => crate::metrics::status_class(outcome.status_code)
        )
        .record(outcome.duration.as_secs_f64());
        self.record(&event, &config, outcome, probe).await
    }

    /// The test endpoint's delivery: one attempt of `delivery` to `config` (active or not), and
    /// then, in one transaction, its event, already `delivered` or `failed`, with the attempt.
    /// Nothing is written before the outcome is known, so a request that dies midway (client
    /// gone, api stopped) cannot leave a `pending` event without a job behind.
    pub async fn deliver_test(
        &self,
        config: &webhook_configs::Model,
        delivery: NewDelivery,
    ) -> Result<(Enqueued, AttemptOutcome), EngineError> {
        let mut config = config.clone();
        crate::secrets::reveal(&self.keyring, &mut config);
        let message_id = MessageId::generate().into_inner();
        let created_at = Utc::now();
        let message = Message {
            message_id: &message_id,
            event_type: &delivery.event_type,
            created_at,
            payload: &delivery.payload,
            ordering: None,
        };
        let outcome = match build_request(message, &config, created_at) {
            Ok(req) => attempt(&self.client, &req).await,
            Err(e) => AttemptOutcome::failed_before_sending(e.to_string()),
        };
        let now = Utc::now();
        let status = match outcome.verdict() {
            Verdict::Delivered => EventStatus::Delivered,
            Verdict::Gone | Verdict::Retry => EventStatus::Failed,
        };
        let written = Written::of(&outcome, 1, now);
        let event_id = store::record_test(
            &self.db,
            store::TestRecord {
                message_id: &message_id,
                delivery: &delivery,
                status,
                response_data: &written.response_data,
                last_error: written.last_error.as_deref(),
                created_at,
                now,
            },
            |event_id| written.attempt_row(event_id),
        )
        .await?;
        Ok((
            Enqueued {
                event_id,
                message_id,
            },
            outcome,
        ))
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

    /// Parks the delivery behind its failing endpoint's probe: no attempt, no job, until the
    /// probe's outcome wakes it ([`crate::queue::parked`]).
    async fn park(
        &self,
        event: &webhook_events::Model,
        config_id: ConfigId,
    ) -> Result<bool, EngineError> {
        let parked = parked::park(&self.db, EventId(event.id), event.attempts, config_id).await?;
        if parked {
            metrics::counter!(crate::metrics::DELIVERIES_TOTAL, "result" => "parked").increment(1);
        }
        Ok(parked)
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
        probe: bool,
    ) -> Result<Processed, EngineError> {
        let now = Utc::now();
        let attempt_no = event.attempts + 1;
        let in_series = u32::try_from(attempt_no - event.attempt_base).unwrap_or(0);
        let verdict = outcome.verdict();
        let (status, next_attempt_at) = match verdict {
            Verdict::Delivered => (EventStatus::Delivered, None),
            Verdict::Gone => (EventStatus::Failed, None),
            Verdict::Retry if in_series >= config.retry_config.max_attempts => {
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
        // A failed probe goes back among the parked deliveries of its gated endpoint instead of
        // retrying on its own schedule: the next probe is appointed when the hold ends.
        let next_attempt_at = next_attempt_at.filter(|_| !probe);
        let delivered = verdict == Verdict::Delivered;
        let was_failing = config.failing_since.is_some() || config.probe_until.is_some();
        let health = match (delivered, was_failing) {
            (true, true) => Health::Recovered,
            (true, false) => Health::StillHealthy,
            (false, _) => Health::Failed { probe },
        };
        let written = Written::of(&outcome, attempt_no, now);
        let record = AttemptRecord {
            event_id: EventId(event.id),
            config_id: ConfigId(config.id),
            prior_attempts: event.attempts,
            row: written.attempt_row(EventId(event.id)),
            status,
            response_data: written.response_data,
            next_attempt_at,
            last_error: written.last_error,
            now,
            gone: verdict == Verdict::Gone,
            health,
            release: release_for(event, config, status, now),
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

/// Whether the recorded attempt of an ordered delivery hands its key on (`None`: unordered, or
/// it keeps the key):
/// - delivered: yes;
/// - failed for good: under `detach` yes, under `block` no (the key stays blocked until the
///   event is retried and delivered, or skipped);
/// - a retry scheduled: under `detach`, if it has held the key for `maxHoldSeconds` (checked
///   against the key's `head_since` in the release); under `block`, no.
///
/// A configuration whose `ordering` was removed drains its keys as `detach` with no hold.
/// Whether the event still holds its key is the release's business: a detached event that
/// arrives late releases nothing.
fn release_for(
    event: &webhook_events::Model,
    config: &webhook_configs::Model,
    status: EventStatus,
    now: DateTime<Utc>,
) -> Option<ordered::Release> {
    let (key, seq) = (event.ordering_key.clone()?, event.ordering_seq?);
    let (on_stuck, max_hold) = match &config.ordering {
        Some(o) => (o.on_stuck, o.max_hold_seconds),
        None => (OnStuck::Detach, 0),
    };
    let held_before = match (status, on_stuck) {
        (EventStatus::Delivered, _) | (EventStatus::Failed, OnStuck::Detach) => None,
        (EventStatus::Pending, OnStuck::Detach) => {
            Some(now - chrono::Duration::seconds(i64::from(max_hold)))
        }
        _ => return None,
    };
    Some(ordered::Release {
        config_id: ConfigId(config.id),
        key,
        seq,
        held_before,
    })
}

/// What a delivery says: the same for every attempt of one event.
struct Message<'a> {
    message_id: &'a str,
    event_type: &'a str,
    created_at: DateTime<Utc>,
    payload: &'a serde_json::Value,
    ordering: Option<OrderingOut<'a>>,
}

impl<'a> Message<'a> {
    fn of(event: &'a webhook_events::Model) -> Self {
        Self {
            message_id: &event.message_id,
            event_type: &event.event_type,
            created_at: event.created_at,
            payload: &event.payload,
            ordering: event.ordering_key.as_deref().zip(event.ordering_seq).map(
                |(key, sequence)| OrderingOut {
                    key,
                    sequence,
                    previous_id: event.ordering_previous.as_deref(),
                },
            ),
        }
    }
}

fn build_request(
    message: Message<'_>,
    config: &webhook_configs::Model,
    now: DateTime<Utc>,
) -> Result<DeliveryRequest, crate::signing::SecretError> {
    let keys = signing_keys(config, now)?;
    let envelope = Envelope {
        event_type: message.event_type,
        timestamp: message
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        data: message.payload,
        ordering: message.ordering,
    };
    Ok(DeliveryRequest {
        url: config.url.clone(),
        msg_id: message.message_id.to_owned(),
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

#[cfg(test)]
mod tests {
    use entity::{
        ConfigStatus, Direction, EventStatus, EventTypes, Filters, Headers, OnStuck, Ordering,
        RetryPolicy, Source, webhook_configs, webhook_events,
    };

    use super::release_for;

    fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid time")
    }

    fn config(ordering: Option<(OnStuck, u32)>) -> webhook_configs::Model {
        webhook_configs::Model {
            id: 7,
            name: "c".into(),
            url: "http://127.0.0.1:9/".into(),
            secret: String::new(),
            event_types: EventTypes::default(),
            status: ConfigStatus::Active,
            headers: Headers::default(),
            retry_config: RetryPolicy::default(),
            filters: Filters::default(),
            metadata: serde_json::json!({}),
            disabled_reason: None,
            disabled_at: None,
            previous_secret: None,
            previous_secret_expires_at: None,
            failing_since: None,
            failed_attempts: 0,
            probe_until: None,
            deleted_at: None,
            ordering: ordering.map(|(on_stuck, max_hold_seconds)| Ordering {
                key: "/callId".into(),
                on_stuck,
                max_hold_seconds,
            }),
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn event(ordered: bool) -> webhook_events::Model {
        webhook_events::Model {
            id: 1,
            message_id: "msg_1".into(),
            direction: Direction::Outbound,
            source: Source::Platform,
            event_type: "call.completed".into(),
            payload: serde_json::json!({}),
            status: EventStatus::Pending,
            attempts: 0,
            attempt_base: 0,
            webhook_config_id: Some(7),
            response_data: None,
            parent_event_id: None,
            dedupe_key: None,
            next_attempt_at: None,
            last_error: None,
            provider_payload: None,
            client_ip: None,
            ordering_key: ordered.then(|| "CA1".to_owned()),
            ordering_seq: ordered.then_some(3),
            ordering_previous: None,
            waiting_on_key: false,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    #[test]
    fn an_unordered_delivery_never_releases() {
        let unordered = config(None);
        for status in [
            EventStatus::Delivered,
            EventStatus::Failed,
            EventStatus::Pending,
        ] {
            assert!(release_for(&event(false), &unordered, status, at(10)).is_none());
        }
    }

    #[test]
    fn a_delivered_head_releases_at_once_under_either_policy() {
        for policy in [OnStuck::Detach, OnStuck::Block] {
            let release = release_for(
                &event(true),
                &config(Some((policy, 300))),
                EventStatus::Delivered,
                at(10),
            )
            .expect("release");
            assert_eq!((release.key.as_str(), release.seq), ("CA1", 3));
            assert_eq!(release.held_before, None);
        }
    }

    #[test]
    fn a_head_failed_for_good_releases_under_detach_and_blocks_under_block() {
        let failed = |policy| {
            release_for(
                &event(true),
                &config(Some((policy, 300))),
                EventStatus::Failed,
                at(10),
            )
        };
        assert_eq!(failed(OnStuck::Detach).expect("release").held_before, None);
        assert!(failed(OnStuck::Block).is_none());
    }

    #[test]
    fn a_retrying_head_detaches_only_once_it_has_held_for_max_hold() {
        let detach = release_for(
            &event(true),
            &config(Some((OnStuck::Detach, 300))),
            EventStatus::Pending,
            at(1000),
        )
        .expect("release");
        assert_eq!(detach.held_before, Some(at(700)));
        assert!(
            release_for(
                &event(true),
                &config(Some((OnStuck::Block, 300))),
                EventStatus::Pending,
                at(1000)
            )
            .is_none()
        );
    }

    #[test]
    fn a_configuration_no_longer_ordered_drains_its_keys_without_a_hold() {
        let release = release_for(&event(true), &config(None), EventStatus::Pending, at(50))
            .expect("release");
        assert_eq!(release.held_before, Some(at(50)));
    }
}
