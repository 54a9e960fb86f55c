//! Verified provider bodies turned into the platform's events.
//!
//! The payload is the contract's camelCase shape with only the fields the provider gave:
//! `callId`, `direction`, `from`, `to`, `status`, `duration` (seconds), `startTime`, `endTime`,
//! `campaignId`, `contactId`, `agentId`, `outcome`, `timestamp`, and where relevant
//! `recordingId`, `recordingUrl`, `voiceId`, `conversationId`, `error`, `reason`, `summary`,
//! `transcript` and `metadata` (the provider's own metadata object). Times are RFC 3339 UTC.
//! `campaignId`, `agentId` and `outcome` are strings, so configuration filters can match them.
//!
//! Ordering keys (a configuration's `ordering.key`): `/callId` is the key to order one call's
//! events by. It is set on every `call.*`, `recording.*` and `voice.*` event of both providers
//! whose body names the call: SignalWire's `call_id` (contract and RELAY bodies) or `CallSid`
//! (cXML callbacks, recording callbacks included); ElevenLabs' `call_id` (contract), the
//! post-call webhooks' `metadata.phone_call.call_sid` or the dynamic variable `callId`/`call_id`,
//! and an initiation failure's `CallSid`. The same call keeps the same value across its events
//! and providers' retries. A conversation that is no phone call (an ElevenLabs web or SDK
//! session) has no call: its events have no `callId`, go unordered and are counted
//! (`wirehook_ordered_missing_key_total`); `/conversationId` orders those.
//!
//! Unknown event types are not errors: they come back with `event_type: None`, to be recorded
//! as `ignored`. Only a body that cannot be read at all is a [`NormalizeError`].

mod fields;
mod from_elevenlabs;
mod from_signalwire;

use entity::{EventType, Source};
use serde_json::Value;

use super::is_form_encoded;
use crate::domain::{UnstorableJson, storable_json};
use fields::Object;

/// A provider event in the platform's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The catalog event type; `None` when the event is not one the platform publishes.
    pub event_type: Option<EventType>,
    /// The provider's own type string (e.g. `calling.call.state`, `post_call_transcription`, or
    /// the cXML `CallStatus`), for audit.
    pub provider_type: String,
    /// The provider's identity of this event, for de-duplication; `None` means hash the body.
    pub identity: Option<String>,
    /// The canonical camelCase payload (always an object).
    pub payload: Value,
    /// The provider's body as JSON; a form body is an object of its fields.
    pub raw: Value,
}

/// Why a provider body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// The body is JSON the database could not store and read back (see [`storable_json`]).
    #[error("the body {0}")]
    Unstorable(UnstorableJson),
    /// The body is declared form-encoded but is not UTF-8 form data.
    #[error("the body is not valid application/x-www-form-urlencoded UTF-8 data")]
    InvalidForm,
}

/// Normalizes a SignalWire body: JSON (contract shape or RELAY events) or a cXML form callback.
pub fn signalwire(content_type: Option<&str>, body: &[u8]) -> Result<Normalized, NormalizeError> {
    if is_form_encoded(content_type) {
        Ok(from_signalwire::form(parse_form(body)?))
    } else {
        Ok(from_signalwire::json(parse_object(body)?))
    }
}

/// Normalizes an ElevenLabs body: the contract shape or a real post-call webhook.
pub fn elevenlabs(body: &[u8]) -> Result<Normalized, NormalizeError> {
    Ok(from_elevenlabs::json(parse_object(body)?))
}

fn parse_object(body: &[u8]) -> Result<Object, NormalizeError> {
    let value =
        serde_json::from_slice(body).map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
    storable_json(&value).map_err(NormalizeError::Unstorable)?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(NormalizeError::NotAnObject),
    }
}

/// The form's fields in body order.
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, NormalizeError> {
    std::str::from_utf8(body).map_err(|_| NormalizeError::InvalidForm)?;
    Ok(url::form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect())
}

/// Provider type of a body that names none.
const UNKNOWN: &str = "unknown";

/// Event type, identity and payload of one body.
type Parts = (Option<EventType>, Option<String>, fields::Payload);

/// The catalog type named `name`, if `source` publishes it.
fn catalog_type(name: &str, source: Source) -> Option<EventType> {
    name.parse()
        .ok()
        .filter(|t: &EventType| t.source() == source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_json_is_an_error() {
        let err = signalwire(Some("application/json"), b"{not json").unwrap_err();
        assert!(matches!(err, NormalizeError::InvalidJson(_)));
        assert!(err.to_string().starts_with("the body is not valid JSON"));
    }

    #[test]
    fn a_json_array_is_not_an_object() {
        assert_eq!(elevenlabs(b"[1,2]"), Err(NormalizeError::NotAnObject));
    }

    #[test]
    fn a_body_nested_deeper_than_the_limit_is_refused() {
        let body = |levels: usize| {
            format!(
                r#"{{"event_type": "call.completed", "deep": {}{}}}"#,
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        let max = crate::domain::MAX_JSON_DEPTH;
        assert!(elevenlabs(body(max).as_bytes()).is_ok());
        assert_eq!(
            elevenlabs(body(max + 1).as_bytes()),
            Err(NormalizeError::Unstorable(UnstorableJson::TooDeep))
        );
    }

    #[test]
    fn a_nul_character_in_a_json_body_is_refused() {
        assert_eq!(
            elevenlabs(br#"{"event_type": "call.completed", "note": "a\u0000b"}"#),
            Err(NormalizeError::Unstorable(UnstorableJson::NulCharacter))
        );
    }

    #[test]
    fn an_empty_body_is_not_json() {
        assert!(matches!(
            elevenlabs(b""),
            Err(NormalizeError::InvalidJson(_))
        ));
    }

    #[test]
    fn a_form_body_that_is_not_utf8_is_an_error() {
        assert_eq!(
            signalwire(Some("application/x-www-form-urlencoded"), &[0xff, 0xfe]),
            Err(NormalizeError::InvalidForm)
        );
    }

    #[test]
    fn a_catalog_type_of_another_source_is_not_accepted() {
        assert_eq!(
            catalog_type("call.created", Source::SignalWire),
            Some(EventType::CallCreated)
        );
        assert_eq!(catalog_type("agent.ready", Source::SignalWire), None);
    }
}
