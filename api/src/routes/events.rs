//! `/api/webhooks/events`: event history.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use entity::{
    Direction, EventStatus, EventType, ResponseData, Source, webhook_attempts, webhook_configs,
    webhook_events,
};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::Value;

use sea_orm::TransactionTrait;
use wirehook_core::queue::ordered::{self, SkipRefused};
use wirehook_core::queue::{self, RetryRefused};

use super::ApiTags;
use crate::auth::BearerAuth;
use crate::contention::retrying;
use crate::error::{ApiError, ApiResult};
use crate::history;
use crate::ingest::{Disposition, Ingestor, Received};
use crate::json_input::{JsonBody, Text};
use crate::read_replica::Reads;

/// A webhook event, inbound or outbound.
#[derive(Debug, Object)]
#[oai(rename = "WebhookEvent", rename_all = "camelCase")]
pub struct EventOut {
    pub id: i64,
    /// Public message id, sent to receivers as `webhook-id`; stable across retries.
    pub message_id: String,
    pub direction: Direction,
    pub source: Source,
    /// One of the catalog's event types, except on inbound events the platform does not
    /// publish: `ignored` ones carry the provider's own type (e.g. `call.state`), `rejected`
    /// ones `unverified`. Hence a string, not the `EventType` enum.
    pub event_type: String,
    pub status: EventStatus,
    /// Outbound: exactly the `data` delivered. Inbound from a provider: the provider's body as
    /// received (JSON as sent, a form callback as an object of its fields); a rejected request:
    /// `{contentType, bytes, truncated, body}` with the first 4 KiB of its body. Published
    /// platform events: the payload as published.
    pub payload: Value,
    /// Inbound from a provider (processed or ignored): the platform's camelCase form of
    /// `payload`, which is what its outbound deliveries carry as `data`.
    #[oai(skip_serializing_if_is_none)]
    pub normalized_payload: Option<Value>,
    /// Delivery attempts made so far (outbound).
    pub attempts: i32,
    #[oai(skip_serializing_if_is_none)]
    pub webhook_config_id: Option<i64>,
    /// The receiver's answer to the latest attempt (outbound).
    #[oai(skip_serializing_if_is_none)]
    pub response_data: Option<ResponseData>,
    /// The inbound or published event this delivery came from.
    #[oai(skip_serializing_if_is_none)]
    pub parent_event_id: Option<i64>,
    /// When the next attempt is due (pending outbound events).
    #[oai(skip_serializing_if_is_none)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the latest attempt failed, or why the request was rejected.
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    /// Inbound: the client address (the socket peer, or what a trusted proxy forwarded).
    #[oai(skip_serializing_if_is_none)]
    pub client_ip: Option<String>,
    /// Outbound deliveries of an ordered configuration: where the event stands in its key.
    #[oai(skip_serializing_if_is_none)]
    pub ordering: Option<EventOrdering>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<webhook_events::Model> for EventOut {
    fn from(m: webhook_events::Model) -> Self {
        // Storage keeps the normalized form in `payload` (outbound rows copy it) and what a
        // provider sent in `provider_payload`; the API shows the provider's body as `payload`.
        let (payload, normalized_payload) = match m.provider_payload {
            Some(received) if m.direction == Direction::Inbound => (
                received,
                (m.status != EventStatus::Rejected).then_some(m.payload),
            ),
            _ => (m.payload, None),
        };
        Self {
            id: m.id,
            message_id: m.message_id,
            direction: m.direction,
            source: m.source,
            event_type: m.event_type,
            status: m.status,
            payload,
            normalized_payload,
            attempts: m.attempts,
            webhook_config_id: m.webhook_config_id,
            response_data: m.response_data,
            parent_event_id: m.parent_event_id,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error,
            client_ip: m.client_ip,
            ordering: m
                .ordering_key
                .zip(m.ordering_seq)
                .map(|(key, sequence)| EventOrdering {
                    key,
                    sequence,
                    previous_id: m.ordering_previous,
                    waiting: m.waiting_on_key,
                }),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// An ordered delivery's place in its key, as its signed body's `ordering` says it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventOrdering {
    /// The key value (e.g. the call id).
    pub key: String,
    /// 1 for the key's first event, in the order the events were accepted.
    pub sequence: i64,
    /// The message id of the key's event before this one (absent for the first).
    #[oai(skip_serializing_if_is_none)]
    pub previous_id: Option<String>,
    /// Pending behind the event that holds the key: it is not attempted until that one is
    /// delivered, skipped, or (`onStuck: detach`) has held the key for `maxHoldSeconds`.
    pub waiting: bool,
}

/// One outbound HTTP attempt.
#[derive(Debug, Object)]
#[oai(rename = "DeliveryAttempt", rename_all = "camelCase")]
pub struct AttemptOut {
    pub attempt: i32,
    #[oai(skip_serializing_if_is_none)]
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    /// Error kind (`timeout`, `connect`, `http_status`, …) when the attempt failed.
    #[oai(skip_serializing_if_is_none)]
    pub error_kind: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// Headers sent, signature redacted.
    pub request_headers: BTreeMap<String, String>,
    /// The receiver's response headers, lowercase names (absent when no response arrived).
    #[oai(skip_serializing_if_is_none)]
    pub response_headers: Option<BTreeMap<String, String>>,
    #[oai(skip_serializing_if_is_none)]
    pub response_body: Option<String>,
    /// True when the stored body was cut at 32 KiB.
    pub truncated: bool,
    pub created_at: DateTime<Utc>,
}

impl From<webhook_attempts::Model> for AttemptOut {
    fn from(m: webhook_attempts::Model) -> Self {
        Self {
            attempt: m.attempt,
            status_code: m.status_code,
            duration_ms: m.duration_ms,
            error_kind: m.error_kind,
            error: m.error_message,
            request_headers: header_map(m.request_headers),
            response_headers: m.response_headers.map(header_map),
            response_body: m.response_body,
            truncated: m.truncated,
            created_at: m.created_at,
        }
    }
}

/// A stored header map: the worker records headers as a JSON object of strings. Anything else
/// (never written) reads as no headers rather than failing the whole history request.
fn header_map(stored: Value) -> BTreeMap<String, String> {
    match stored {
        Value::Object(headers) => headers
            .into_iter()
            .filter_map(|(name, value)| match value {
                Value::String(value) => Some((name, value)),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The configuration an event belongs to, in brief.
#[derive(Debug, Object)]
#[oai(rename = "WebhookConfigSummary", rename_all = "camelCase")]
pub struct ConfigSummary {
    pub id: i64,
    pub name: String,
    pub url: String,
    /// When the configuration was deleted; its events stay in the history.
    #[oai(skip_serializing_if_is_none)]
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventListResponse {
    pub success: bool,
    /// Events on this page.
    pub count: u64,
    /// Events matching the filters.
    pub total: u64,
    pub page: u64,
    /// Pages at this limit (0 when nothing matches).
    pub pages: u64,
    pub events: Vec<EventOut>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventDetailsResponse {
    pub success: bool,
    pub event: EventOut,
    /// The configuration an outbound event was for (also after it was deleted).
    #[oai(skip_serializing_if_is_none)]
    pub webhook_config: Option<ConfigSummary>,
    /// Every outbound attempt, oldest first.
    pub delivery_attempts: Vec<AttemptOut>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RetryResponse {
    pub success: bool,
    pub message: String,
    pub event: EventOut,
}

impl From<RetryRefused> for ApiError {
    fn from(e: RetryRefused) -> Self {
        match e {
            RetryRefused::NotFound(_) => {
                ApiError::NotFound(e.to_string().trim_end_matches(" not found").to_owned())
            }
            RetryRefused::Db(db) => db.into(),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

impl From<SkipRefused> for ApiError {
    fn from(e: SkipRefused) -> Self {
        match e {
            SkipRefused::NotFound(_) => {
                ApiError::NotFound(e.to_string().trim_end_matches(" not found").to_owned())
            }
            SkipRefused::Db(db) => db.into(),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct SkipResponse {
    pub success: bool,
    pub message: String,
    /// The skipped event, now `cancelled`.
    pub event: EventOut,
}

/// A platform event to publish to the configurations subscribed to its type.
#[derive(Debug, Object)]
#[oai(rename = "PublishEvent", rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEventRequest {
    /// One of the catalog's event types.
    pub event_type: EventType,
    /// The event's data: what subscribers receive as `data`.
    pub payload: BTreeMap<String, Value>,
    /// Makes publishing safe to retry: a key seen before returns the event first published with
    /// it, and nothing is published again (1–255 characters).
    #[oai(validator(min_length = 1, max_length = 255))]
    pub idempotency_key: Option<Text>,
    /// For configurations with `ordering`: the key this event is ordered under, instead of the
    /// value at the configuration's `ordering.key` pointer (1–255 characters). Ignored by
    /// unordered configurations.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub ordering_key: Option<Text>,
}

/// A published platform event.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct PublishedEvent {
    pub success: bool,
    pub message: String,
    /// The recorded event (for a duplicate, the one first published with the key).
    pub event: EventOut,
    /// The idempotency key was seen before.
    pub duplicate: bool,
    /// Deliveries queued to configured endpoints.
    pub deliveries: u32,
}

/// Answers to a publish.
#[derive(Debug, ApiResponse)]
pub enum PublishResponse {
    /// Recorded and queued for every matching configuration.
    #[oai(status = 201)]
    Created(Json<PublishedEvent>),
    /// The idempotency key was seen before: the first event, nothing published again.
    #[oai(status = 200)]
    Duplicate(Json<PublishedEvent>),
}

/// Event history handlers.
pub struct EventsApi {
    /// The primary: writes, and the reads that must see them (details, answers of writes).
    pub db: DatabaseConnection,
    /// The list, from the read replica when there is one.
    pub reads: Reads,
    /// Records published events (group commit).
    pub ingestor: Ingestor,
}

/// Parses an ISO 8601 timestamp, or a date; `end_of_day` makes a date mean the end of that day.
fn parse_date(name: &str, raw: &str, end_of_day: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| if end_of_day { d.and_hms_milli_opt(23, 59, 59, 999) } else { d.and_hms_opt(0, 0, 0) })
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::Validation(format!(
                "`{name}` must be an ISO 8601 date or date-time, e.g. 2023-07-29 or 2023-07-29T10:00:00Z"
            ))
        })
}

#[OpenApi(prefix_path = "/api/webhooks/events", tag = "ApiTags::Events")]
impl EventsApi {
    /// Publish a platform event
    ///
    /// Records the event (source `11wire`) and, in the same transaction, queues a delivery to
    /// every active configuration subscribed to its type whose filters match the payload
    /// (`campaignId`, `outcome`, `agentId`). With an `idempotencyKey` seen before, answers 200
    /// with the first event and `duplicate: true`.
    #[oai(path = "/", method = "post", operation_id = "events.publish")]
    async fn publish_event(
        &self,
        _auth: BearerAuth,
        body: JsonBody<PublishEventRequest>,
    ) -> ApiResult<PublishResponse> {
        let body = body.0;
        let idempotency_key = match body.idempotency_key.map(Text::into_inner) {
            Some(key) if key.trim().is_empty() => {
                return Err(
                    ApiError::Validation("`idempotencyKey` must not be blank".into()).into(),
                );
            }
            other => other,
        };
        let ordering_key = match body.ordering_key.map(Text::into_inner) {
            Some(key)
                if key.trim().is_empty()
                    || key.len() > entity::MAX_ORDERING_KEY_BYTES
                    || key.contains('\0') =>
            {
                return Err(ApiError::Validation(
                    "`orderingKey` must be 1 to 255 bytes, not blank, without NUL characters"
                        .into(),
                )
                .into());
            }
            other => other,
        };
        let payload = Value::Object(body.payload.into_iter().collect());
        crate::domain::storable_json(&payload)
            .map_err(|e| ApiError::Validation(format!("`payload` {e}")))?;
        let recorded = self
            .ingestor
            .record(Received {
                source: Source::Platform,
                disposition: Disposition::Deliver(body.event_type),
                payload,
                provider_payload: None,
                dedupe_key: idempotency_key,
                client_ip: None,
                ordering_key,
            })
            .await
            .map_err(|e| {
                let error = ApiError::from(e);
                if matches!(error, ApiError::Overloaded) {
                    crate::overload::Kind::Publish.count_overloaded();
                }
                error
            })?;
        let published = PublishedEvent {
            success: true,
            message: if recorded.duplicate {
                "Event already published with this idempotency key".into()
            } else {
                "Event published".into()
            },
            duplicate: recorded.duplicate,
            deliveries: u32::try_from(recorded.deliveries).unwrap_or(u32::MAX),
            event: recorded.event.into(),
        };
        tracing::info!(
            event_id = published.event.id,
            event_type = %published.event.event_type,
            duplicate = published.duplicate,
            deliveries = published.deliveries,
            "platform event"
        );
        Ok(if published.duplicate {
            PublishResponse::Duplicate(Json(published))
        } else {
            PublishResponse::Created(Json(published))
        })
    }

    /// List webhook events, newest first
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/", method = "get", operation_id = "events.list")]
    async fn list_events(
        &self,
        _auth: BearerAuth,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u64>>,
        direction: Query<Option<Direction>>,
        source: Query<Option<Source>>,
        /// Event type, e.g. `call.completed`.
        #[oai(name = "eventType", validator(min_length = 1, max_length = 100))]
        event_type: Query<Option<String>>,
        status: Query<Option<EventStatus>>,
        /// Events created at or after this ISO 8601 date or date-time.
        #[oai(name = "fromDate")]
        from_date: Query<Option<String>>,
        /// Events created at or before this ISO 8601 date-time (a date means the end of that day).
        #[oai(name = "toDate")]
        to_date: Query<Option<String>>,
        /// Only events of this configuration.
        #[oai(name = "webhookConfigId")]
        webhook_config_id: Query<Option<i64>>,
        /// Only events of this call: the payload's `callId` equals it exactly (outbound
        /// deliveries, the normalized form of inbound provider events, and platform events
        /// published with one). Answered from an index on `callId`.
        #[oai(name = "callId", validator(min_length = 1, max_length = 255))]
        call_id: Query<Option<String>>,
    ) -> ApiResult<Json<EventListResponse>> {
        let page = page.0.unwrap_or(1);
        let limit = limit.0.unwrap_or(20);
        let filter = history::Filter {
            direction: direction.0,
            source: source.0,
            event_type: event_type.0,
            status: status.0,
            from: from_date
                .0
                .as_deref()
                .map(|d| parse_date("fromDate", d, false))
                .transpose()?,
            to: to_date
                .0
                .as_deref()
                .map(|d| parse_date("toDate", d, true))
                .transpose()?,
            config_id: webhook_config_id.0,
            call_id: call_id.0,
        };
        if let (Some(f), Some(t)) = (filter.from, filter.to)
            && f > t
        {
            return Err(
                ApiError::Validation("`fromDate` must not be after `toDate`".into()).into(),
            );
        }
        let filter = &filter;
        let (total, events) = self
            .reads
            .list(|db| async move {
                let total = history::total(&db, filter).await?;
                let events = filter
                    .apply(webhook_events::Entity::find())
                    .order_by_desc(webhook_events::Column::CreatedAt)
                    .order_by_desc(webhook_events::Column::Id)
                    .offset((page - 1) * limit)
                    .limit(limit)
                    .all(&db)
                    .await?;
                Ok((total, events))
            })
            .await?;
        Ok(Json(EventListResponse {
            success: true,
            count: events.len() as u64,
            total,
            page,
            pages: total.div_ceil(limit),
            events: events.into_iter().map(EventOut::from).collect(),
        }))
    }

    /// Get one webhook event with its configuration and delivery attempts
    #[oai(path = "/:id", method = "get", operation_id = "events.get")]
    async fn get_event(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<EventDetailsResponse>> {
        // From the primary, never the read replica: a client reads an event right after its
        // publish or retry answered (see `crate::read_replica` for why).
        let (event, config) = webhook_events::Entity::find_by_id(id.0)
            .find_also_related(webhook_configs::Entity)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("webhook event {}", id.0)))?;
        let attempts = webhook_attempts::Entity::find()
            .filter(webhook_attempts::Column::EventId.eq(event.id))
            .order_by_asc(webhook_attempts::Column::Attempt)
            .order_by_asc(webhook_attempts::Column::Id)
            .all(&self.db)
            .await?;
        Ok(Json(EventDetailsResponse {
            success: true,
            event: event.into(),
            webhook_config: config.map(|c| ConfigSummary {
                id: c.id,
                name: c.name,
                url: c.url,
                deleted_at: c.deleted_at,
            }),
            delivery_attempts: attempts.into_iter().map(AttemptOut::from).collect(),
        }))
    }

    /// Retry a failed outbound delivery
    ///
    /// Queues one attempt now; if it fails, a fresh backoff series of up to `maxAttempts` more
    /// follows. `attempts` keeps counting. Only `failed` events, or `cancelled` ones whose
    /// configuration is active, can be retried (409 otherwise).
    #[oai(path = "/:id/retry", method = "post", operation_id = "events.retry")]
    async fn retry_event(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<RetryResponse>> {
        let event = retrying(|| async {
            let txn = self.db.begin().await?;
            let event = queue::requeue(&txn, entity::EventId(id.0))
                .await
                .map_err(ApiError::from)?;
            txn.commit().await?;
            Ok(event)
        })
        .await?;
        tracing::info!(event_id = id.0, "manual retry queued");
        Ok(Json(RetryResponse {
            success: true,
            message: "Webhook delivery retry queued".into(),
            event: event.into(),
        }))
    }

    /// Skip an ordered delivery
    ///
    /// For configurations with `ordering`: cancels a `pending` or `failed` delivery and, if it
    /// holds its key (a blocked key's head), lets the next event of the key go now. Receivers
    /// see the gap in `ordering.sequence`. 409 for a delivery that is not ordered, or already
    /// delivered or cancelled.
    #[oai(path = "/:id/skip", method = "post", operation_id = "events.skip")]
    async fn skip_event(&self, _auth: BearerAuth, id: Path<i64>) -> ApiResult<Json<SkipResponse>> {
        let event = retrying(|| async {
            let txn = self.db.begin().await?;
            let event = ordered::skip(&txn, entity::EventId(id.0))
                .await
                .map_err(ApiError::from)?;
            txn.commit().await?;
            Ok(event)
        })
        .await?;
        tracing::info!(event_id = id.0, "ordered delivery skipped");
        Ok(Json(SkipResponse {
            success: true,
            message: "Webhook delivery skipped; the next event of its key goes now".into(),
            event: event.into(),
        }))
    }
}
