//! Recording received events (provider webhooks and platform events) and fanning them out to
//! the matching configurations ([`Ingestor`]: concurrent events share one atomic statement),
//! and the audit of refused requests.

use entity::{Direction, EventStatus, EventType, MessageId, Source, webhook_events};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr};
use serde_json::{Value, json};

mod group;

pub use group::{IngestError, Ingestor, WARM_CONNECTIONS, record_batch, warm_up};

/// The most of a rejected request's body that is kept for the audit.
pub const REJECTED_BODY_LIMIT: usize = 4 * 1024;

/// What becomes of a verified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// A catalog event: recorded `processed` and delivered to the matching configurations.
    Deliver(EventType),
    /// Not a type the platform knows: recorded `ignored` under the provider's own type name.
    Ignore {
        /// The provider's name for the event.
        provider_type: String,
    },
}

/// A verified event to record.
#[derive(Debug, Clone)]
pub struct Received {
    pub source: Source,
    pub disposition: Disposition,
    /// The platform's payload (what configurations receive as `data`).
    pub payload: Value,
    /// What the provider sent, for the audit.
    pub provider_payload: Option<Value>,
    /// Provider event identity or idempotency key; a second event with the same key is a
    /// duplicate.
    pub dedupe_key: Option<String>,
    pub client_ip: Option<String>,
    /// Orders this event's deliveries under this key for every configuration with `ordering`,
    /// instead of the value at the configuration's key pointer (`orderingKey` of a publish).
    pub ordering_key: Option<String>,
}

/// The outcome of [`Ingestor::record`].
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The recorded event; for a duplicate, the event first recorded under the same key.
    pub event: webhook_events::Model,
    /// The key was seen before: nothing was recorded or delivered this time.
    pub duplicate: bool,
    /// Outbound deliveries queued.
    pub deliveries: usize,
}

/// A request refused before it was trusted, for the audit.
#[derive(Debug, Clone)]
pub struct Rejected<'a> {
    pub source: Source,
    /// Why it was refused (the message the caller got).
    pub reason: String,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub client_ip: Option<String>,
}

/// Records a refused request as a `rejected` inbound event with at most
/// [`REJECTED_BODY_LIMIT`] bytes of its body; returns the event id.
pub async fn record_rejected(
    db: &impl ConnectionTrait,
    rejected: Rejected<'_>,
) -> Result<i64, DbErr> {
    let kept = bounded_text(rejected.body, REJECTED_BODY_LIMIT);
    let event = webhook_events::ActiveModel {
        message_id: Set(MessageId::generate().into_inner()),
        direction: Set(Direction::Inbound),
        source: Set(rejected.source),
        event_type: Set("unverified".to_owned()),
        payload: Set(json!({})),
        status: Set(EventStatus::Rejected),
        last_error: Set(Some(rejected.reason)),
        provider_payload: Set(Some(json!({
            "contentType": rejected.content_type,
            "bytes": rejected.body.len(),
            "truncated": kept.len() < rejected.body.len(),
            "body": kept,
        }))),
        client_ip: Set(rejected.client_ip),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(event.id)
}

/// The first `limit` bytes of `body` as text, cut at a character boundary; invalid UTF-8 and
/// NUL bytes (which PostgreSQL cannot store) are replaced.
fn bounded_text(body: &[u8], limit: usize) -> String {
    let mut head = &body[..body.len().min(limit)];
    if let Err(e) = std::str::from_utf8(head)
        && e.error_len().is_none()
    {
        // A character cut in half at the limit: drop its first bytes.
        head = &head[..e.valid_up_to()];
    }
    String::from_utf8_lossy(head).replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::bounded_text;

    #[test]
    fn bounded_text_keeps_short_bodies_whole() {
        assert_eq!(bounded_text(b"{\"a\":1}", 4096), "{\"a\":1}");
    }

    #[test]
    fn bounded_text_cuts_at_the_limit() {
        assert_eq!(bounded_text(&[b'x'; 5000], 4096).len(), 4096);
    }

    #[test]
    fn bounded_text_never_splits_a_character() {
        // "é" is two bytes; the limit falls between them.
        let body = "aé".as_bytes();
        assert_eq!(bounded_text(body, 2), "a");
    }

    #[test]
    fn bounded_text_replaces_invalid_utf8() {
        assert_eq!(bounded_text(&[0xff, b'a'], 10), "\u{fffd}a");
    }

    #[test]
    fn bounded_text_replaces_nul_bytes() {
        assert_eq!(bounded_text(b"a\0b", 10), "a\u{fffd}b");
    }
}
