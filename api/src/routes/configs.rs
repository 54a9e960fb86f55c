//! `/api/webhooks/config`: outbound webhook configuration CRUD.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use entity::{
    ConfigStatus, EventStatus, EventType, Filters, RetryPolicy, webhook_configs, webhook_events,
};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde_json::Value;

use super::ApiTags;
use wirehook_worker::engine::{Engine, Mode, Processed};
use wirehook_worker::queue::{self, NewDelivery};

use crate::auth::BearerAuth;
use crate::domain::{self, ConfigName, TargetUrl};
use crate::error::{ApiError, ApiResult};

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
    pub max_attempts: Option<u32>,
    /// Seconds before the second attempt, ≥ 1 (default 30).
    pub initial_delay: Option<u32>,
    /// Upper bound for any delay in seconds, ≥ initialDelay (default 3600).
    pub max_delay: Option<u32>,
    /// Multiplier per attempt, 1–10 (default 2).
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

/// Body of `POST /api/webhooks/config`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigIn {
    /// 1–255 characters.
    pub name: String,
    /// Absolute http(s) URL deliveries are POSTed to.
    pub url: String,
    /// Standard Webhooks secret (`whsec_` + base64, or plain base64); generated when omitted.
    pub secret: Option<String>,
    /// Event types to deliver; at least one.
    pub event_types: Vec<EventType>,
    /// `active` (default) or `inactive`.
    pub status: Option<UserStatus>,
    /// Extra headers sent with every delivery.
    pub headers: Option<BTreeMap<String, String>>,
    pub retry_config: Option<RetryConfigIn>,
    pub filters: Option<Filters>,
    /// Free-form JSON object kept with the configuration.
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// Body of `PUT /api/webhooks/config/{id}`: a partial update; omitted fields are unchanged.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    /// Replaces the signing secret at once (no overlap).
    pub secret: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    /// `active` re-enables a disabled configuration; `inactive` cancels its queued deliveries.
    pub status: Option<UserStatus>,
    /// Replaces all custom headers.
    pub headers: Option<BTreeMap<String, String>>,
    pub retry_config: Option<RetryConfigIn>,
    /// Replaces all filters; `{}` matches every event.
    pub filters: Option<Filters>,
    pub metadata: Option<BTreeMap<String, Value>>,
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
    pub db: DatabaseConnection,
    /// The delivery engine; `None` only when rendering the spec.
    pub engine: Option<std::sync::Arc<Engine>>,
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

/// Configuration `id`, locked for update until `txn` ends; 404 when there is none.
pub(crate) async fn lock_config(
    txn: &sea_orm::DatabaseTransaction,
    id: i64,
) -> Result<webhook_configs::Model, ApiError> {
    webhook_configs::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The 404 for configuration `id`.
pub(crate) fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("webhook config {id}"))
}

/// Marks the configuration's queued deliveries `cancelled` so workers skip them.
async fn cancel_pending(
    conn: &impl ConnectionTrait,
    config_id: i64,
    why: &str,
) -> Result<u64, sea_orm::DbErr> {
    let res = webhook_events::Entity::update_many()
        .col_expr(
            webhook_events::Column::Status,
            Expr::value(EventStatus::Cancelled.to_value()),
        )
        .col_expr(
            webhook_events::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(webhook_events::Column::LastError, Expr::value(why))
        .col_expr(webhook_events::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook_events::Column::WebhookConfigId.eq(config_id))
        .filter(webhook_events::Column::Status.eq(EventStatus::Pending))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

#[OpenApi(prefix_path = "/api/webhooks/config", tag = "ApiTags::Configs")]
impl ConfigsApi {
    /// List webhook configurations
    #[oai(path = "/", method = "get", operation_id = "configs.list")]
    async fn list_configs(&self, _auth: BearerAuth) -> ApiResult<Json<ConfigListResponse>> {
        let rows = webhook_configs::Entity::find()
            .order_by_asc(webhook_configs::Column::Id)
            .all(&self.db)
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
        let row = webhook_configs::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .ok_or_else(|| not_found(id.0))?;
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
        body: Json<ConfigIn>,
    ) -> ApiResult<CreatedConfig> {
        let input = body.0;
        let secret = domain::secret(input.secret)?;
        let now = Utc::now();
        let model = webhook_configs::ActiveModel {
            name: Set(ConfigName::try_from(input.name)?.into_inner()),
            url: Set(TargetUrl::try_from(input.url)?.into_inner()),
            secret: Set(secret.clone()),
            event_types: Set(domain::event_types(input.event_types)?),
            status: Set(input.status.unwrap_or(UserStatus::Active).into()),
            headers: Set(domain::custom_headers(input.headers.unwrap_or_default())?),
            retry_config: Set(match input.retry_config {
                Some(r) => r.apply_to(RetryPolicy::default())?,
                None => RetryPolicy::default(),
            }),
            filters: Set(domain::filters(input.filters.unwrap_or_default())?),
            metadata: Set(domain::metadata(input.metadata.unwrap_or_default())?),
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
        body: Json<ConfigPatch>,
    ) -> ApiResult<Json<ConfigChangedResponse>> {
        let patch = body.0;
        let txn = self.db.begin().await?;
        let current = lock_config(&txn, id.0).await?;
        let base_retry = current.retry_config;
        let mut row = current.into_active_model();
        if let Some(name) = patch.name {
            row.name = Set(ConfigName::try_from(name)?.into_inner());
        }
        if let Some(url) = patch.url {
            row.url = Set(TargetUrl::try_from(url)?.into_inner());
        }
        if let Some(secret) = patch.secret {
            row.secret = Set(domain::secret(Some(secret))?);
            // Replaced at once: the old secret stops signing (rotate-secret keeps an overlap).
            row.previous_secret = Set(None);
            row.previous_secret_expires_at = Set(None);
        }
        if let Some(types) = patch.event_types {
            row.event_types = Set(domain::event_types(types)?);
        }
        if let Some(headers) = patch.headers {
            row.headers = Set(domain::custom_headers(headers)?);
        }
        if let Some(retry) = patch.retry_config {
            row.retry_config = Set(retry.apply_to(base_retry)?);
        }
        if let Some(filters) = patch.filters {
            row.filters = Set(domain::filters(filters)?);
        }
        if let Some(metadata) = patch.metadata {
            row.metadata = Set(domain::metadata(metadata)?);
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
            } else {
                cancel_pending(&txn, id.0, "configuration deactivated").await?;
            }
        }
        row.updated_at = Set(Utc::now());
        let model = row.update(&txn).await?;
        txn.commit().await?;
        Ok(Json(ConfigChangedResponse {
            success: true,
            message: "Webhook configuration updated successfully".into(),
            webhook: model.into(),
        }))
    }

    /// Delete a webhook configuration
    ///
    /// Queued deliveries are cancelled; past events stay in the history.
    #[oai(path = "/:id", method = "delete", operation_id = "configs.delete")]
    async fn delete_config(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<MessageResponse>> {
        let txn = self.db.begin().await?;
        cancel_pending(&txn, id.0, "configuration deleted").await?;
        let res = webhook_configs::Entity::delete_by_id(id.0)
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(not_found(id.0).into());
        }
        txn.commit().await?;
        tracing::info!(config_id = id.0, "webhook config deleted");
        Ok(Json(MessageResponse {
            success: true,
            message: "Webhook configuration deleted successfully".into(),
        }))
    }

    /// Send a test event to a webhook configuration
    ///
    /// Delivers once, synchronously, through the same engine as queued deliveries, and records it
    /// as an outbound event with its attempt. A failing receiver is reported in `details`, not as
    /// an HTTP error.
    #[oai(path = "/:id/test", method = "post", operation_id = "configs.test")]
    async fn test_config(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
        body: Json<TestIn>,
    ) -> ApiResult<Json<TestResponse>> {
        let engine = self
            .engine
            .as_ref()
            .ok_or_else(|| ApiError::Internal("delivery engine missing".into()))?;
        let config = webhook_configs::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .ok_or_else(|| not_found(id.0))?;
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
        let created = queue::insert_events(
            &self.db,
            vec![NewDelivery {
                config_id: config.id,
                source: entity::Source::Platform,
                event_type: event_type.as_str().to_owned(),
                payload,
                parent_event_id: None,
            }],
        )
        .await?;
        let event = created
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::Internal("test event not created".into()))?;
        let processed = engine
            .deliver(event.event_id, Mode::Once)
            .await
            .map_err(ApiError::from)?;
        let Processed::Attempted { outcome, .. } = processed else {
            return Err(
                ApiError::Conflict("the configuration was deleted during the test".into()).into(),
            );
        };
        let delivered = outcome.verdict() == wirehook_worker::attempt::Verdict::Delivered;
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
                event_id: event.event_id,
                message_id: event.message_id,
            },
        }))
    }
}
