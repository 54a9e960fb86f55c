//! Backpressure at the edge: every `/api/` request takes a slot of its kind and its declared
//! body bytes from fixed budgets before its body is read, or is answered `503 overloaded` with
//! `Retry-After` at once; and every request is answered within `REQUEST_TIMEOUT_SECS`.
//!
//! Memory is bounded by construction, not by tuning: at most `ingest_in_flight +
//! api_in_flight` handlers run, holding at most `body_bytes_in_flight` of bodies, and the
//! group commit holds at most `ingest_in_flight` events ([`crate::ingest::Ingestor`]).
//! Operations (`/healthz`, `/readyz`, `/metrics`), the docs and the console are never refused
//! here, so an overloaded api can still be watched.

use std::sync::Arc;
use std::time::Duration;

use entity::Source;
use poem::http::Method;
use poem::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use poem::{Endpoint, Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::MAX_BODY_BYTES;
use crate::config::Limits;
use crate::error::{ApiError, response_for, with_retry_after};
use crate::ingest_limit::{IngestLimit, Slot};
use crate::routes::inbound::INBOUND_TOTAL;

/// Counter: REST API requests refused, labelled `result` = `overloaded` (the provider webhooks'
/// refusals count in [`INBOUND_TOTAL`] under the same result).
pub const API_REQUESTS_TOTAL: &str = "wirehook_api_requests_total";

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A provider webhook: recorded through the group commit.
    Inbound(Source),
    /// `POST /api/webhooks/events`: recorded through the group commit.
    Publish,
    /// Any other `/api/` request.
    Api,
    /// Operations, docs, the console: never refused by the budgets.
    Ops,
}

impl Kind {
    /// The kind of a request to `path` with `method`.
    pub fn of(method: &Method, path: &str) -> Self {
        let path = path.trim_end_matches('/');
        match (method, path) {
            (&Method::POST, "/api/webhooks/signalwire") => Self::Inbound(Source::SignalWire),
            (&Method::POST, "/api/webhooks/elevenlabs") => Self::Inbound(Source::ElevenLabs),
            (&Method::POST, "/api/webhooks/events") => Self::Publish,
            _ if path.starts_with("/api/") => Self::Api,
            _ => Self::Ops,
        }
    }

    /// Counts a request of this kind refused as overloaded.
    pub fn count_overloaded(self) {
        match self {
            Self::Inbound(source) => metrics::counter!(INBOUND_TOTAL,
                "source" => source.as_str().to_owned(), "result" => "overloaded")
            .increment(1),
            Self::Publish | Self::Api | Self::Ops => {
                metrics::counter!(API_REQUESTS_TOTAL, "result" => "overloaded").increment(1)
            }
        }
    }
}

/// The budgets of one api process; shared by every connection.
pub struct Admission {
    ingest: Arc<IngestLimit>,
    api: Arc<Semaphore>,
    /// In KiB, so that any budget fits a semaphore's permits.
    body_kib: Arc<Semaphore>,
    timeout: Duration,
}

/// A request's hold on its budgets, released when its response has been produced.
struct Admitted {
    _slot: Held,
    _body: Option<OwnedSemaphorePermit>,
}

/// The slot a request holds.
enum Held {
    Ingest { _slot: Slot },
    Api { _permit: OwnedSemaphorePermit },
}

impl Admission {
    /// Budgets of `limits`.
    pub fn new(limits: &Limits) -> Self {
        let kib = u32::try_from(limits.body_bytes_in_flight / 1024).unwrap_or(u32::MAX);
        Self {
            ingest: IngestLimit::new(limits.ingest_in_flight, limits.ingest_latency_target),
            api: Arc::new(Semaphore::new(limits.api_in_flight)),
            body_kib: Arc::new(Semaphore::new(kib as usize)),
            timeout: limits.request_timeout,
        }
    }

    /// Takes the slot and body budget `req` needs, or `None` when either is spent.
    fn admit(&self, kind: Kind, req: &Request) -> Option<Option<Admitted>> {
        let slot = match kind {
            Kind::Inbound(_) | Kind::Publish => Held::Ingest {
                _slot: self.ingest.try_acquire()?,
            },
            Kind::Api => Held::Api {
                _permit: self.api.clone().try_acquire_owned().ok()?,
            },
            Kind::Ops => return Some(None),
        };
        let kib = declared_body_bytes(req).div_ceil(1024);
        let body = match u32::try_from(kib) {
            Ok(0) => None,
            Ok(kib) => Some(self.body_kib.clone().try_acquire_many_owned(kib).ok()?),
            Err(_) => return None,
        };
        Some(Some(Admitted {
            _slot: slot,
            _body: body,
        }))
    }

    /// Serves `req` through `ep` if the budgets allow, within the request timeout.
    pub async fn serve<E: Endpoint>(&self, ep: &E, req: Request) -> Response {
        let kind = Kind::of(req.method(), req.uri().path());
        let Some(_admitted) = self.admit(kind, &req) else {
            kind.count_overloaded();
            return response_for(ApiError::Overloaded);
        };
        let mut response = match tokio::time::timeout(self.timeout, ep.get_response(req)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::info!(
                    timeout_secs = self.timeout.as_secs(),
                    "request not answered in time"
                );
                response_for(ApiError::Timeout(self.timeout.as_secs()))
            }
        };
        with_retry_after(&mut response);
        response
    }
}

/// The body bytes a request may bring: its `Content-Length` (at most the largest body read),
/// the largest body when it is sent chunked, none otherwise.
fn declared_body_bytes(req: &Request) -> usize {
    let headers = req.headers();
    match headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(len) => usize::try_from(len).map_or(MAX_BODY_BYTES, |l| l.min(MAX_BODY_BYTES)),
        None if headers.contains_key(TRANSFER_ENCODING) => MAX_BODY_BYTES,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_group_commit_routes_are_ingest() {
        assert_eq!(
            Kind::of(&Method::POST, "/api/webhooks/signalwire"),
            Kind::Inbound(Source::SignalWire)
        );
        assert_eq!(
            Kind::of(&Method::POST, "/api/webhooks/events/"),
            Kind::Publish
        );
        assert_eq!(Kind::of(&Method::GET, "/api/webhooks/events"), Kind::Api);
        assert_eq!(Kind::of(&Method::GET, "/metrics"), Kind::Ops);
        assert_eq!(Kind::of(&Method::GET, "/readyz"), Kind::Ops);
    }

    fn limits(body_bytes_in_flight: usize) -> Limits {
        Limits {
            ingest_in_flight: 2,
            body_bytes_in_flight,
            ..Limits::default()
        }
    }

    fn post(len: usize) -> Request {
        Request::builder()
            .method(Method::POST)
            .uri(poem::http::Uri::from_static("/api/webhooks/events"))
            .header(CONTENT_LENGTH, len.to_string())
            .finish()
    }

    #[test]
    fn a_request_past_the_slots_is_refused() {
        let admission = Admission::new(&limits(1 << 20));
        let held: Vec<_> = (0..2)
            .map(|_| admission.admit(Kind::Publish, &post(10)).expect("slot"))
            .collect();
        assert!(admission.admit(Kind::Publish, &post(10)).is_none());
        drop(held);
        assert!(admission.admit(Kind::Publish, &post(10)).is_some());
    }

    #[test]
    fn a_request_past_the_body_budget_is_refused_before_its_body_is_read() {
        let admission = Admission::new(&limits(1 << 20));
        let held = admission.admit(Kind::Publish, &post(600 * 1024));
        assert!(held.is_some());
        assert!(admission.admit(Kind::Publish, &post(600 * 1024)).is_none());
        assert!(admission.admit(Kind::Api, &post(600 * 1024)).is_none());
    }
}
