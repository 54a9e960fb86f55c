//! `/api/webhooks/config`: outbound webhook configurations. CRUD here; rotation and recovery in
//! [`operations`].

pub mod operations;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use entity::{
    ConfigStatus, EventStatus, EventType, Filters, OnStuck, Ordering, RetryPolicy, webhook_configs,
};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
    TransactionTrait,
};
use serde_json::Value;

use super::ApiTags;
use wirehook_core::engine::Engine;
use wirehook_core::queue::{NewDelivery, parked};
use wirehook_core::secrets::Keyring;

use crate::auth::BearerAuth;
use crate::contention::retrying;
use crate::domain::{self, ConfigName, TargetUrl};
use crate::error::{ApiError, ApiResult};
use crate::json_input::{JsonBody, Text};

/// Statuses a user may set; `disabled` is set only by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Inactive,
}

impl From<UserStatus> for ConfigStatus {
    fn from(s: UserStatus) -> Self {
        match s {
            UserStatus::Active => ConfigStatus::Active,
            UserStatus::Inactive => ConfigStatus::Inactive,
        }
    }
}

/// Retry settings; omitted fields keep their current (or default) value.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfigIn {
    /// Attempts in one series, 1–50 (default 5).
    #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
    pub max_attempts: Option<u32>,
    /// Seconds before the second attempt, 1–604800 (default 30).
    #[oai(validator(minimum(value = "1"), maximum(value = "604800")))]
    pub initial_delay: Option<u32>,
    /// Upper bound for any delay in seconds, 1–604800 and ≥ initialDelay (default 3600).
    #[oai(validator(minimum(value = "1"), maximum(value = "604800")))]
    pub max_delay: Option<u32>,
    /// Multiplier per attempt, 1–10 (default 2).
    #[oai(validator(minimum(value = "1"), maximum(value = "10")))]
    pub backoff_factor: Option<f64>,
}

impl RetryConfigIn {
    fn apply_to(self, base: RetryPolicy) -> Result<RetryPolicy, ApiError> {
        domain::retry_policy(RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            initial_delay: self.initial_delay.unwrap_or(base.initial_delay),
            max_delay: self.max_delay.unwrap_or(base.max_delay),
            backoff_factor: self.backoff_factor.unwrap_or(base.backoff_factor),
        })
    }
}

/// Which events of the subscribed types a configuration receives; an absent key matches all.
#[derive(Debug, Clone, Default, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct FiltersIn {
    /// Matches the event's `campaignId`.
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub campaigns: Option<Vec<Text>>,
    /// Matches the event's `outcome`.
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub outcomes: Option<Vec<Text>>,
    /// Matches the event's `agentId`.
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub agents: Option<Vec<Text>>,
}

impl From<FiltersIn> for Filters {
    fn from(f: FiltersIn) -> Self {
        let texts = |values: Option<Vec<Text>>| {
            values.map(|values| values.into_iter().map(Text::into_inner).collect())
        };
        Self {
            campaigns: texts(f.campaigns),
            outcomes: texts(f.outcomes),
            agents: texts(f.agents),
        }
    }
}

/// Ordered delivery per key: the events whose payload has the same value at `key` are
/// delivered to this configuration one at a time, in the order they were accepted.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields, example)]
pub struct OrderingIn {
    /// JSON Pointer (RFC 6901) into the event payload, e.g. `/callId` (guaranteed on every call,
    /// recording and voice event of SignalWire and ElevenLabs). Must start with `/`: a key that
    /// is not a pointer would be one constant value, putting every event in one queue.
    #[oai(validator(min_length = 2, max_length = 255))]
    pub key: Text,
    /// `detach` (default): after `maxHoldSeconds` the next event goes and the stuck one keeps
    /// retrying and arrives late. `block`: the key waits until its head is delivered, or skipped
    /// (`POST /api/webhooks/events/{id}/skip`).
    pub on_stuck: Option<OnStuck>,
    /// How long the head of a key may hold it before `onStuck` applies, 1–604800 seconds
    /// (default 300).
    #[oai(validator(minimum(value = "1"), maximum(value = "604800")))]
    pub max_hold_seconds: Option<u32>,
}

impl poem_openapi::types::Example for OrderingIn {
    fn example() -> Self {
        Self {
            key: Text("/callId".to_owned()),
            on_stuck: Some(OnStuck::Detach),
            max_hold_seconds: Some(Ordering::DEFAULT_MAX_HOLD_SECONDS),
        }
    }
}

impl OrderingIn {
    fn into_ordering(self) -> Result<Ordering, ApiError> {
        Ok(Ordering {
            key: domain::ordering_pointer(self.key.into_inner())?,
            on_stuck: self.on_stuck.unwrap_or_default(),
            max_hold_seconds: self
                .max_hold_seconds
                .unwrap_or(Ordering::DEFAULT_MAX_HOLD_SECONDS),
        })
    }
}

/// Body of `POST /api/webhooks/config`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigIn {
    /// 1–255 characters.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub name: Text,
    /// Absolute http(s) URL deliveries are POSTed to.
    #[oai(validator(max_length = 2048))]
    pub url: Text,
    /// Standard Webhooks secret (`whsec_` + base64, or plain base64); generated when omitted.
    pub secret: Option<Text>,
    /// Event types to deliver; at least one.
    #[oai(validator(min_items = 1))]
    pub event_types: Vec<EventType>,
    /// `active` (default) or `inactive`.
    pub status: Option<UserStatus>,
    /// Extra headers sent with every delivery (at most 32; names kept as given).
    #[oai(validator(max_properties = 32))]
    pub headers: Option<BTreeMap<String, Text>>,
    pub retry_config: Option<RetryConfigIn>,
    pub filters: Option<FiltersIn>,
    /// Free-form JSON object kept with the configuration.
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Deliver the events of one key (e.g. one call) in order; absent: in parallel, unordered.
    pub ordering: Option<OrderingIn>,
}

/// Body of `PUT /api/webhooks/config/{id}`: a partial update; omitted fields are unchanged.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    /// 1–255 characters.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub name: Option<Text>,
    #[oai(validator(max_length = 2048))]
    pub url: Option<Text>,
    /// Replaces the signing secret at once (no overlap).
    pub secret: Option<Text>,
    #[oai(validator(min_items = 1))]
    pub event_types: Option<Vec<EventType>>,
    /// `active` re-enables a disabled configuration; `inactive` cancels its queued deliveries.
    pub status: Option<UserStatus>,
    /// Replaces all custom headers.
    #[oai(validator(max_properties = 32))]
    pub headers: Option<BTreeMap<String, Text>>,
    pub retry_config: Option<RetryConfigIn>,
    /// Replaces all filters; `{}` matches every event.
    pub filters: Option<FiltersIn>,
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Replaces the ordering; `null` makes the configuration unordered (events already waiting
    /// on a key are released one after another).
    pub ordering: MaybeUndefined<OrderingIn>,
}

/// A webhook configuration as the API returns it (never with its secret).
#[derive(Debug, Object)]
#[oai(rename = "WebhookConfig", rename_all = "camelCase")]
pub struct ConfigOut {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub event_types: Vec<EventType>,
    pub status: ConfigStatus,
    pub headers: BTreeMap<String, String>,
    pub retry_config: RetryPolicy,
    pub filters: Filters,
    pub metadata: BTreeMap<String, Value>,
    /// Why the service disabled this configuration.
    #[oai(skip_serializing_if_is_none)]
    pub disabled_reason: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Since when every delivery to this endpoint failed (absent while healthy). While failing,
    /// deliveries go one at a time; after `AUTO_DISABLE_AFTER_HOURS` the service disables it.
    #[oai(skip_serializing_if_is_none)]
    pub failing_since: Option<DateTime<Utc>>,
    /// Attempts failed since `failingSince`.
    pub failed_attempts: i32,
    /// Until when the secret replaced by the latest rotation still signs deliveries.
    #[oai(skip_serializing_if_is_none)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Ordered delivery per key (absent: unordered).
    #[oai(skip_serializing_if_is_none)]
    pub ordering: Option<Ordering>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<webhook_configs::Model> for ConfigOut {
    fn from(m: webhook_configs::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            url: m.url,
            event_types: catalog_types(m.id, m.event_types.0),
            status: m.status,
            headers: m.headers.0,
            retry_config: m.retry_config,
            filters: m.filters,
            metadata: match m.metadata {
                Value::Object(metadata) => metadata.into_iter().collect(),
                _ => BTreeMap::new(),
            },
            disabled_reason: m.disabled_reason,
            disabled_at: m.disabled_at,
            failing_since: m.failing_since,
            failed_attempts: m.failed_attempts,
            previous_secret_expires_at: m
                .previous_secret_expires_at
                .filter(|until| *until > Utc::now()),
            ordering: m.ordering,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The stored event types of configuration `id`, all from the catalog: they are validated on the
/// way in. A type the catalog has since lost is left out (and logged) rather than failing every
/// read of the configuration.
fn catalog_types(id: i64, stored: Vec<String>) -> Vec<EventType> {
    stored
        .into_iter()
        .filter_map(|name| match name.parse() {
            Ok(event_type) => Some(event_type),
            Err(unknown) => {
                tracing::warn!(config_id = id, %unknown, "stored event type not in the catalog");
                None
            }
        })
        .collect()
}

/// A newly created configuration, with its secret shown this once.
#[derive(Debug, Object)]
#[oai(rename = "WebhookConfigWithSecret", rename_all = "camelCase")]
pub struct ConfigCreatedOut {
    #[oai(flatten)]
    pub config: ConfigOut,
    /// The signing secret; store it now, it is not returned again.
    pub secret: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ConfigListResponse {
    pub success: bool,
    pub webhooks: Vec<ConfigOut>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ConfigResponse {
    pub success: bool,
    pub webhook: ConfigOut,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ConfigChangedResponse {
    pub success: bool,
    pub message: String,
    pub webhook: ConfigOut,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ConfigCreatedResponse {
    pub success: bool,
    pub message: String,
    pub webhook: ConfigCreatedOut,
}

/// Success with a message only.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct MessageResponse {
    pub success: bool,
    pub message: String,
}

#[derive(ApiResponse)]
pub enum CreatedConfig {
    /// The configuration was created.
    #[oai(status = 201)]
    Created(Json<ConfigCreatedResponse>),
}

/// Body of `POST /api/webhooks/config/{id}/test`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestIn {
    /// Must be one of the configuration's event types.
    pub event_type: EventType,
    /// Delivered as the envelope's `data`; a sample payload is used when omitted.
    pub test_payload: Option<BTreeMap<String, Value>>,
}

/// What the receiver did with the test delivery.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TestDetails {
    /// True when the receiver answered 2xx.
    pub delivered: bool,
    /// The receiver's HTTP status; absent when no response arrived.
    #[oai(skip_serializing_if_is_none)]
    pub status_code: Option<u16>,
    /// First 32 KiB of the response body.
    pub response_body: String,
    /// Milliseconds until the response was read.
    pub response_time: u64,
    /// Why no response arrived (timeout, connection refused, blocked target, …).
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// Id of the recorded outbound event (see `GET /api/webhooks/events/{id}`).
    pub event_id: i64,
    /// The `webhook-id` the delivery was sent with.
    pub message_id: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TestResponse {
    pub success: bool,
    pub message: String,
    pub details: TestDetails,
}

/// Configuration CRUD handlers.
pub struct ConfigsApi {
    /// The primary: writes, and the reads that must see them (a configuration by id).
    pub db: DatabaseConnection,
    /// The list, from the read replica when there is one.
    pub reads: crate::read_replica::Reads,
    /// The delivery engine; `None` only when rendering the spec.
    pub engine: Option<std::sync::Arc<Engine>>,
    /// Encrypts secrets before they are stored.
    pub keyring: std::sync::Arc<Keyring>,
}

/// Header values as plain strings, names unchanged.
fn strings(headers: BTreeMap<String, Text>) -> BTreeMap<String, String> {
    headers
        .into_iter()
        .map(|(name, value)| (name, value.into_inner()))
        .collect()
}

/// A sample payload for a test delivery of `event_type`.
fn sample_payload(event_type: EventType) -> Value {
    serde_json::json!({
        "test": true,
        "eventType": event_type.as_str(),
        "callId": "test-call-123",
        "direction": "outbound",
        "from": "+18005551234",
        "to": "+18005557890",
        "status": "completed",
        "duration": 120,
        "campaignId": "campaign-test",
        "contactId": 42,
        "outcome": "appointment_set"
    })
}

/// Configurations not deleted: the only ones the configuration API shows.
fn live() -> sea_orm::Select<webhook_configs::Entity> {
    webhook_configs::Entity::find().filter(webhook_configs::Column::DeletedAt.is_null())
}

/// Configuration `id`; 404 when there is none or it was deleted.
pub(crate) async fn find_config(
    conn: &impl ConnectionTrait,
    id: i64,
) -> Result<webhook_configs::Model, ApiError> {
    live()
        .filter(webhook_configs::Column::Id.eq(id))
        .one(conn)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Configuration `id`, locked for update until `txn` ends; 404 when there is none or it was
/// deleted.
pub(crate) async fn lock_config(
    txn: &sea_orm::DatabaseTransaction,
    id: i64,
) -> Result<webhook_configs::Model, ApiError> {
    live()
        .filter(webhook_configs::Column::Id.eq(id))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The 404 for configuration `id`.
pub(crate) fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("webhook config {id}"))
}

/// Marks the configuration's queued deliveries `cancelled` so workers skip them: heads and
/// events waiting on their ordering key alike (its ordering keys are left held; the maintenance
/// sweep idles them, `wirehook_core::queue::ordered::sweep`).
///
/// The caller holds the configuration's row lock; the events are locked in id order, the order
/// every writer of a configuration and its events follows (see [`crate::contention`]).
async fn cancel_pending(
    conn: &impl ConnectionTrait,
    config_id: i64,
    why: &str,
) -> Result<u64, sea_orm::DbErr> {
    let pending = EventStatus::Pending.to_value();
    let res = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            // Locked once, then updated by id: as a locking `IN` subquery, stale statistics can
            // make the planner rescan it per row (see `wirehook_core::queue::parked::wake`).
            "WITH picked AS (SELECT id FROM webhook_events \
                            WHERE webhook_config_id = $1 AND status = $4 \
                            ORDER BY id FOR NO KEY UPDATE) \
             UPDATE webhook_events \
             SET status = $3, next_attempt_at = NULL, waiting_on_key = false, last_error = $2, \
                 updated_at = now() \
             WHERE id = ANY(ARRAY(SELECT id FROM picked)) AND status = $4",
            [
                config_id.into(),
                why.into(),
                EventStatus::Cancelled.to_value().into(),
                pending.into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected())
}

#[OpenApi(prefix_path = "/api/webhooks/config", tag = "ApiTags::Configs")]
impl ConfigsApi {
    /// List webhook configurations
    #[oai(path = "/", method = "get", operation_id = "configs.list")]
    async fn list_configs(&self, _auth: BearerAuth) -> ApiResult<Json<ConfigListResponse>> {
        let rows = self
            .reads
            .list(|db| async move {
                live()
                    .order_by_asc(webhook_configs::Column::Id)
                    .all(&db)
                    .await
            })
            .await?;
        Ok(Json(ConfigListResponse {
            success: true,
            webhooks: rows.into_iter().map(ConfigOut::from).collect(),
        }))
    }

    /// Get one webhook configuration
    #[oai(path = "/:id", method = "get", operation_id = "configs.get")]
    async fn get_config(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<ConfigResponse>> {
        // From the primary, never the read replica: a client reads a configuration right after
        // creating or updating it (see `crate::read_replica` for why).
        let row = find_config(&self.db, id.0).await?;
        Ok(Json(ConfigResponse {
            success: true,
            webhook: row.into(),
        }))
    }

    /// Create a webhook configuration
    ///
    /// The response carries the signing secret (generated when not given); it is never returned again.
    #[oai(path = "/", method = "post", operation_id = "configs.create")]
    async fn create_config(
        &self,
        _auth: BearerAuth,
        body: JsonBody<ConfigIn>,
    ) -> ApiResult<CreatedConfig> {
        let input = body.0;
        let secret = domain::secret(input.secret.map(Text::into_inner))?;
        let now = Utc::now();
        let model = webhook_configs::ActiveModel {
            name: Set(ConfigName::try_from(input.name.into_inner())?.into_inner()),
            url: Set(TargetUrl::try_from(input.url.into_inner())?.into_inner()),
            secret: Set(self.keyring.encrypt(&secret)),
            event_types: Set(domain::event_types(input.event_types)?),
            status: Set(input.status.unwrap_or(UserStatus::Active).into()),
            headers: Set(domain::custom_headers(strings(
                input.headers.unwrap_or_default(),
            ))?),
            retry_config: Set(match input.retry_config {
                Some(r) => r.apply_to(RetryPolicy::default())?,
                None => RetryPolicy::default(),
            }),
            filters: Set(domain::filters(input.filters.unwrap_or_default().into())?),
            metadata: Set(domain::metadata(input.metadata.unwrap_or_default())?),
            ordering: Set(input.ordering.map(OrderingIn::into_ordering).transpose()?),
            disabled_reason: Set(None),
            disabled_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        tracing::info!(config_id = model.id, "webhook config created");
        Ok(CreatedConfig::Created(Json(ConfigCreatedResponse {
            success: true,
            message: "Webhook configuration created successfully".into(),
            webhook: ConfigCreatedOut {
                config: model.into(),
                secret,
            },
        })))
    }

    /// Update a webhook configuration (partial)
    ///
    /// Only the fields present change. Setting `status: inactive` cancels queued deliveries;
    /// `status: active` re-enables a configuration the service disabled.
    #[oai(path = "/:id", method = "put", operation_id = "configs.update")]
    async fn update_config(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
        body: JsonBody<ConfigPatch>,
    ) -> ApiResult<Json<ConfigChangedResponse>> {
        let model = retrying(|| self.update_once(id.0, body.0.clone())).await?;
        Ok(Json(ConfigChangedResponse {
            success: true,
            message: "Webhook configuration updated successfully".into(),
            webhook: model.into(),
        }))
    }

    /// Delete a webhook configuration
    ///
    /// Queued deliveries are cancelled. The configuration disappears from this API (404), but
    /// its past events stay in the history with their `webhookConfigId`, and event details
    /// still name it (with `deletedAt`).
    #[oai(path = "/:id", method = "delete", operation_id = "configs.delete")]
    async fn delete_config(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<MessageResponse>> {
        retrying(|| self.delete_once(id.0)).await?;
        tracing::info!(config_id = id.0, "webhook config deleted");
        Ok(Json(MessageResponse {
            success: true,
            message: "Webhook configuration deleted successfully".into(),
        }))
    }

    /// Send a test event to a webhook configuration
    ///
    /// Delivers once, synchronously, through the same engine as queued deliveries, and records it
    /// as an outbound event with its attempt, written once the outcome is known (`delivered` or
    /// `failed`, never left `pending`). A failing receiver is reported in `details`, not as
    /// an HTTP error.
    #[oai(path = "/:id/test", method = "post", operation_id = "configs.test")]
    async fn test_config(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
        body: JsonBody<TestIn>,
    ) -> ApiResult<Json<TestResponse>> {
        let engine = self
            .engine
            .as_ref()
            .ok_or_else(|| ApiError::Internal("delivery engine missing".into()))?;
        let config = find_config(&self.db, id.0).await?;
        let event_type = body.0.event_type;
        if !config
            .event_types
            .0
            .iter()
            .any(|t| t == event_type.as_str())
        {
            return Err(ApiError::Validation(format!(
                "`eventType` {event_type} is not one of this configuration's event types ({})",
                config.event_types.0.join(", ")
            ))
            .into());
        }
        let payload = match body.0.test_payload {
            Some(p) => domain::metadata(p).map_err(|e| {
                ApiError::Validation(e.to_string().replacen("`metadata`", "`testPayload`", 1))
            })?,
            None => sample_payload(event_type),
        };
        let delivery = NewDelivery {
            config_id: entity::ConfigId(config.id),
            source: entity::Source::Platform,
            event_type: event_type.as_str().to_owned(),
            payload,
            parent_event_id: None,
        };
        // Its own task: a client that hangs up mid-attempt does not cancel it, so an attempt the
        // receiver may have seen is still recorded.
        let engine = engine.clone();
        let (event, outcome) =
            tokio::spawn(async move { engine.deliver_test(&config, delivery).await })
                .await
                .map_err(|e| ApiError::Internal(format!("test delivery task: {e}")))?
                .map_err(ApiError::from)?;
        let delivered = outcome.verdict() == wirehook_core::attempt::Verdict::Delivered;
        let error = outcome
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.kind.as_str(), e.message));
        let message = match (delivered, outcome.status_code) {
            (true, _) => "Test webhook sent successfully".to_owned(),
            (false, Some(code)) => {
                format!("Test webhook failed: the endpoint answered HTTP {code}")
            }
            (false, None) => "Test webhook failed: no response from the endpoint".to_owned(),
        };
        Ok(Json(TestResponse {
            success: true,
            message,
            details: TestDetails {
                delivered,
                status_code: outcome.status_code,
                response_body: outcome.response_body,
                response_time: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
                error,
                event_id: event.event_id.0,
                message_id: event.message_id,
            },
        }))
    }
}

impl ConfigsApi {
    /// One run of a partial update: the configuration row locked first, then (deactivating)
    /// its pending events by id.
    async fn update_once(
        &self,
        id: i64,
        patch: ConfigPatch,
    ) -> Result<webhook_configs::Model, ApiError> {
        let txn = self.db.begin().await?;
        let current = lock_config(&txn, id).await?;
        let base_retry = current.retry_config;
        let mut row = current.into_active_model();
        if let Some(name) = patch.name {
            row.name = Set(ConfigName::try_from(name.into_inner())?.into_inner());
        }
        if let Some(url) = patch.url {
            row.url = Set(TargetUrl::try_from(url.into_inner())?.into_inner());
        }
        if let Some(secret) = patch.secret {
            let secret = domain::secret(Some(secret.into_inner()))?;
            row.secret = Set(self.keyring.encrypt(&secret));
            // Replaced at once: the old secret stops signing (rotate-secret keeps an overlap).
            row.previous_secret = Set(None);
            row.previous_secret_expires_at = Set(None);
        }
        if let Some(types) = patch.event_types {
            row.event_types = Set(domain::event_types(types)?);
        }
        if let Some(headers) = patch.headers {
            row.headers = Set(domain::custom_headers(strings(headers))?);
        }
        if let Some(retry) = patch.retry_config {
            row.retry_config = Set(retry.apply_to(base_retry)?);
        }
        if let Some(filters) = patch.filters {
            row.filters = Set(domain::filters(filters.into())?);
        }
        if let Some(metadata) = patch.metadata {
            row.metadata = Set(domain::metadata(metadata)?);
        }
        match patch.ordering {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => row.ordering = Set(None),
            MaybeUndefined::Value(ordering) => row.ordering = Set(Some(ordering.into_ordering()?)),
        }
        if let Some(status) = patch.status {
            row.status = Set(status.into());
            if status == UserStatus::Active {
                row.disabled_reason = Set(None);
                row.disabled_at = Set(None);
                // A fresh start: no failing clock carried over from before.
                row.failing_since = Set(None);
                row.failed_attempts = Set(0);
                row.probe_until = Set(None);
                // Deliveries parked behind the old failing clock go now (the maintenance sweep
                // would take them within seconds; an operator re-enabling expects them now).
                parked::wake(&txn, entity::ConfigId(id), parked::WAKE_CHUNK).await?;
            } else {
                cancel_pending(&txn, id, "configuration deactivated").await?;
            }
        }
        row.updated_at = Set(Utc::now());
        let model = row.update(&txn).await?;
        txn.commit().await?;
        Ok(model)
    }

    /// One run of a delete: the row stays, marked deleted and inactive, so that its events keep
    /// their configuration; its pending events are cancelled.
    async fn delete_once(&self, id: i64) -> Result<(), ApiError> {
        let txn = self.db.begin().await?;
        let current = lock_config(&txn, id).await?;
        let now = Utc::now();
        let mut row = current.into_active_model();
        // Inactive, so that nothing that checks for `active` (fan-out, workers, retry) can
        // deliver for it again.
        row.status = Set(ConfigStatus::Inactive);
        row.deleted_at = Set(Some(now));
        row.probe_until = Set(None);
        row.updated_at = Set(now);
        row.update(&txn).await?;
        cancel_pending(&txn, id, "configuration deleted").await?;
        txn.commit().await?;
        Ok(())
    }
}
