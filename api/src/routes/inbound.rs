//! `POST /api/webhooks/signalwire` and `POST /api/webhooks/elevenlabs`: provider webhooks.
//!
//! Order of checks: the provider's key is configured (503), the source IP is allowed in
//! production (403), the signature matches the exact bytes (401), the body can be read (400).
//! Refused requests are recorded as `rejected` events, up to `INBOUND_REFUSALS_PER_MINUTE` per
//! client address ([`crate::refusals`]; beyond it they are counted and summarized); every
//! accepted one as a `processed` or `ignored` event, fanned out in the same transaction.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use entity::{EventStatus, Source};
use poem::Request;
use poem::web::RemoteAddr;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::ApiTags;
use crate::config::InboundConfig;
use crate::documented_header::DocumentedHeader;
use crate::error::{ApiError, ApiResult};
use crate::inbound::{self, CidrList, Normalized, SignalWireSignature, SignatureError};
use crate::ingest::{self, Disposition, Ingestor, Received, Recorded, Rejected};
use crate::raw_body::{JsonOnly, JsonOrForm, RawBody};
use crate::refusals::{self, Admission, RefusalLimiter};

/// Counter: inbound provider requests, labelled `source` and `result` = `accepted` |
/// `duplicate` | `ignored` | `rejected_signature` | `rejected_ip` | `invalid` | `unconfigured`.
pub const INBOUND_TOTAL: &str = "wirehook_inbound_requests_total";

/// The answer to a provider.
#[derive(Debug, Object)]
#[oai(rename = "InboundResponse", rename_all = "camelCase")]
pub struct InboundResponse {
    pub success: bool,
    pub message: String,
    /// The recorded inbound event (for a duplicate, the one first recorded).
    pub event_id: i64,
    /// `processed`, or `ignored` for an event type the platform does not publish.
    pub status: EventStatus,
    /// The provider already delivered this event; nothing was recorded or fanned out again.
    pub duplicate: bool,
    /// Deliveries queued to configured endpoints.
    pub deliveries: u32,
}

/// Provider webhook handlers.
pub struct InboundApi {
    pub db: DatabaseConnection,
    /// Records accepted events (group commit).
    pub ingestor: Ingestor,
    pub config: Arc<InboundConfig>,
    /// How many refusals per address are written one by one.
    pub refusals: Arc<RefusalLimiter>,
}

/// A provider request on its way through the checks.
struct Inbound<'a> {
    source: Source,
    refusals: &'a RefusalLimiter,
    /// The body exactly as received.
    body: &'a Bytes,
    content_type: Option<&'a str>,
    client_ip: IpAddr,
}

impl Inbound<'_> {
    fn content_type(&self) -> Option<&str> {
        self.content_type
    }

    /// Records the refusal (a failure to record is logged, never hides the refusal) and
    /// returns `error` for the caller.
    async fn reject(&self, db: &DatabaseConnection, error: ApiError) -> ApiError {
        let result = match &error {
            ApiError::InvalidSignature(_) => "rejected_signature",
            ApiError::Forbidden(_) => "rejected_ip",
            ApiError::Unavailable(_) => "unconfigured",
            _ => "invalid",
        };
        metrics::counter!(INBOUND_TOTAL, "source" => self.source.as_str().to_owned(), "result" => result)
            .increment(1);
        if self.refusals.admit(self.client_ip, Instant::now()) == Admission::CountOnly {
            metrics::counter!(refusals::UNRECORDED_TOTAL,
                "source" => self.source.as_str().to_owned(), "reason" => result)
            .increment(1);
            return error;
        }
        let rejected = Rejected {
            source: self.source,
            reason: error.to_string(),
            body: self.body,
            content_type: self.content_type(),
            client_ip: Some(self.client_ip.to_string()),
        };
        match ingest::record_rejected(db, rejected).await {
            Ok(event_id) => tracing::warn!(
                source = self.source.as_str(),
                event_id,
                client_ip = %self.client_ip,
                reason = %error,
                "inbound request rejected"
            ),
            Err(db_error) => tracing::error!(
                source = self.source.as_str(),
                client_ip = %self.client_ip,
                reason = %error,
                %db_error,
                "inbound request rejected and its audit row could not be written"
            ),
        }
        error
    }
}

#[OpenApi(prefix_path = "/api/webhooks", tag = "ApiTags::Inbound")]
impl InboundApi {
    /// Receive a SignalWire webhook
    ///
    /// JSON call events (`X-SignalWire-Signature`: hex HMAC-SHA1 of URL + body, or
    /// `X-SignalWire-Sha256-Signature`: hex HMAC-SHA256) and form-encoded cXML callbacks
    /// (Twilio-compatible base64 HMAC-SHA1; `X-Twilio-Signature` is accepted too). The URL is
    /// `PUBLIC_BASE_URL` + this path + the query string. Provider retries of the same event
    /// answer 200 with `duplicate: true`. Every call and recording event that names its call
    /// (`call_id`, `CallSid`) is delivered with `callId`: the ordering key for
    /// `ordering: {"key": "/callId"}`.
    #[oai(
        path = "/signalwire",
        method = "post",
        operation_id = "inbound.signalwire"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn signalwire(
        &self,
        req: &Request,
        remote: &RemoteAddr,
        body: RawBody<JsonOrForm>,
        /// JSON events: lowercase hex HMAC-SHA1 of the URL followed by the body. Form-encoded
        /// cXML callbacks (and JSON posted with `?bodySHA256=`): the Twilio-compatible base64
        /// HMAC-SHA1.
        #[oai(name = "X-SignalWire-Signature")]
        _sha1: DocumentedHeader,
        /// JSON events: lowercase hex HMAC-SHA256 of the URL followed by the body; checked
        /// instead of `X-SignalWire-Signature` when present.
        #[oai(name = "X-SignalWire-Sha256-Signature")]
        _sha256: DocumentedHeader,
        /// Read as `X-SignalWire-Signature` when that header is absent.
        #[oai(name = "X-Twilio-Signature")]
        _twilio: DocumentedHeader,
    ) -> ApiResult<Json<InboundResponse>> {
        let inbound = self.start(Source::SignalWire, req, remote, &body);
        let key = self
            .config
            .signalwire_signing_key
            .as_ref()
            .map(|k| k.expose_secret().as_bytes().to_vec());
        let Some(key) = key else {
            return Err(inbound
                .reject(
                    &self.db,
                    not_configured("SignalWire", "SIGNALWIRE_SIGNING_KEY"),
                )
                .await
                .into());
        };
        self.check_ip(&inbound, &self.config.signalwire_allowed_ips, "SignalWire")
            .await?;
        let url = public_url(&self.config, req);
        let header = |name: &str| req.header(name);
        let signature = SignalWireSignature {
            sha1: header("x-signalwire-signature").or_else(|| header("x-twilio-signature")),
            sha256: header("x-signalwire-sha256-signature"),
        };
        let verified = inbound::signalwire::verify(
            &key,
            &url,
            inbound.content_type(),
            &signature,
            &body.bytes,
        );
        self.check_signature(&inbound, verified).await?;
        let normalized = inbound::normalize::signalwire(inbound.content_type(), &body.bytes);
        self.accept(&inbound, normalized).await
    }

    /// Receive an ElevenLabs webhook
    ///
    /// `ElevenLabs-Signature: t=<unix>,v0=<hex HMAC-SHA256 of "t.body">`; timestamps older than
    /// 30 minutes or more than 5 minutes ahead are refused. Provider retries of the same event
    /// answer 200 with `duplicate: true`. Every voice and agent event of a phone call (`call_id`,
    /// `metadata.phone_call.call_sid`, a `callId` dynamic variable, `CallSid`) is delivered with
    /// `callId`: the ordering key for `ordering: {"key": "/callId"}`; a web or SDK conversation
    /// has none (order those on `/conversationId`).
    #[oai(
        path = "/elevenlabs",
        method = "post",
        operation_id = "inbound.elevenlabs"
    )]
    async fn elevenlabs(
        &self,
        req: &Request,
        remote: &RemoteAddr,
        body: RawBody<JsonOnly>,
        /// `t=<unix seconds>,v0=<hex HMAC-SHA256 of "<t>.<body>">`.
        #[oai(name = "ElevenLabs-Signature")]
        _signature: DocumentedHeader,
    ) -> ApiResult<Json<InboundResponse>> {
        let inbound = self.start(Source::ElevenLabs, req, remote, &body);
        let secret = self
            .config
            .elevenlabs_webhook_secret
            .as_ref()
            .map(|k| k.expose_secret().as_bytes().to_vec());
        let Some(secret) = secret else {
            return Err(inbound
                .reject(
                    &self.db,
                    not_configured("ElevenLabs", "ELEVENLABS_WEBHOOK_SECRET"),
                )
                .await
                .into());
        };
        self.check_ip(&inbound, &self.config.elevenlabs_allowed_ips, "ElevenLabs")
            .await?;
        let verified = inbound::elevenlabs::verify(
            &secret,
            req.header("elevenlabs-signature"),
            &body.bytes,
            chrono::Utc::now().timestamp(),
        );
        self.check_signature(&inbound, verified).await?;
        let normalized = inbound::normalize::elevenlabs(&body.bytes);
        self.accept(&inbound, normalized).await
    }
}

impl InboundApi {
    fn start<'a, K>(
        &'a self,
        source: Source,
        req: &Request,
        remote: &RemoteAddr,
        body: &'a RawBody<K>,
    ) -> Inbound<'a> {
        let peer = remote
            .as_socket_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Inbound {
            source,
            refusals: &self.refusals,
            body: &body.bytes,
            content_type: body.content_type.as_deref(),
            client_ip: inbound::client_ip(peer, &forwarded, &self.config.trusted_proxies),
        }
    }

    async fn check_ip(
        &self,
        inbound: &Inbound<'_>,
        allowed: &CidrList,
        provider: &str,
    ) -> Result<(), ApiError> {
        if !self.config.enforce_allow_lists || allowed.contains(inbound.client_ip) {
            return Ok(());
        }
        let error = ApiError::Forbidden(format!(
            "source address {} is not on the {provider} allow list",
            inbound.client_ip
        ));
        Err(inbound.reject(&self.db, error).await)
    }

    async fn check_signature(
        &self,
        inbound: &Inbound<'_>,
        verified: Result<(), SignatureError>,
    ) -> Result<(), ApiError> {
        match verified {
            Ok(()) => Ok(()),
            Err(e) => Err(inbound
                .reject(&self.db, ApiError::InvalidSignature(e.to_string()))
                .await),
        }
    }

    /// Records a verified request and fans it out.
    async fn accept(
        &self,
        inbound: &Inbound<'_>,
        normalized: Result<Normalized, inbound::NormalizeError>,
    ) -> ApiResult<Json<InboundResponse>> {
        let normalized = match normalized {
            Ok(n) => n,
            Err(e) => {
                return Err(inbound
                    .reject(&self.db, ApiError::InvalidBody(e.to_string()))
                    .await
                    .into());
            }
        };
        let dedupe_key = dedupe_key(&normalized, inbound.body);
        let disposition = match normalized.event_type {
            Some(t) => Disposition::Deliver(t),
            None => Disposition::Ignore {
                provider_type: normalized.provider_type.clone(),
            },
        };
        let recorded = self
            .ingestor
            .record(Received {
                source: inbound.source,
                disposition,
                payload: normalized.payload,
                provider_payload: Some(normalized.raw),
                dedupe_key: Some(dedupe_key),
                client_ip: Some(inbound.client_ip.to_string()),
                ordering_key: None,
            })
            .await
            .map_err(|e| {
                let error = ApiError::from(e);
                if matches!(error, ApiError::Overloaded) {
                    crate::overload::Kind::Inbound(inbound.source).count_overloaded();
                }
                error
            })?;
        Ok(Json(answer(inbound.source, &recorded)))
    }
}

/// The provider's event identity where it has one, else the SHA-256 of the exact body.
fn dedupe_key(normalized: &Normalized, body: &[u8]) -> String {
    match &normalized.identity {
        Some(identity) => format!("id:{identity}"),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

fn answer(source: Source, recorded: &Recorded) -> InboundResponse {
    let (outcome, message) = if recorded.duplicate {
        (
            "duplicate",
            "Duplicate webhook: already received, not processed again".to_owned(),
        )
    } else if recorded.event.status == EventStatus::Ignored {
        (
            "ignored",
            format!(
                "Webhook received; event type `{}` is not handled and was ignored",
                recorded.event.event_type
            ),
        )
    } else {
        ("accepted", "Webhook received and processed".to_owned())
    };
    metrics::counter!(INBOUND_TOTAL, "source" => source.as_str().to_owned(), "result" => outcome)
        .increment(1);
    tracing::info!(
        source = source.as_str(),
        event_id = recorded.event.id,
        event_type = %recorded.event.event_type,
        outcome,
        deliveries = recorded.deliveries,
        "inbound webhook"
    );
    InboundResponse {
        success: true,
        message,
        event_id: recorded.event.id,
        status: recorded.event.status,
        duplicate: recorded.duplicate,
        deliveries: u32::try_from(recorded.deliveries).unwrap_or(u32::MAX),
    }
}

fn not_configured(provider: &str, variable: &str) -> ApiError {
    ApiError::Unavailable(format!(
        "{provider} webhooks are not configured on this server: set {variable}"
    ))
}

/// The URL the provider called: `PUBLIC_BASE_URL` (without a trailing slash) + path + query.
fn public_url(config: &InboundConfig, req: &Request) -> String {
    let base = config.public_base_url.as_str().trim_end_matches('/');
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("{base}{path_and_query}")
}
