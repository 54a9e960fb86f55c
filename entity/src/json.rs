//! Typed JSONB columns.

use std::collections::BTreeMap;

use sea_orm::FromJsonQueryResult;
use serde::{Deserialize, Serialize};

/// Event type names a configuration subscribes to (validated against the catalog at the edge).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, FromJsonQueryResult)]
pub struct EventTypes(pub Vec<String>);

/// Custom headers added to every delivery of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, FromJsonQueryResult)]
pub struct Headers(pub BTreeMap<String, String>);

/// Retry schedule of a configuration, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, FromJsonQueryResult)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(
    feature = "openapi",
    oai(rename = "RetryConfig", rename_all = "camelCase")
)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts in one series, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt, in seconds.
    pub initial_delay: u32,
    /// Upper bound for any delay, in seconds.
    pub max_delay: u32,
    /// Multiplier applied to the delay after each attempt.
    pub backoff_factor: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: 30,
            max_delay: 3600,
            backoff_factor: 2.0,
        }
    }
}

/// Which events of the subscribed types a configuration receives; an absent key matches all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, FromJsonQueryResult)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(
    feature = "openapi",
    oai(rename_all = "camelCase", deny_unknown_fields)
)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    /// Matches the event's `campaignId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub campaigns: Option<Vec<String>>,
    /// Matches the event's `outcome`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub outcomes: Option<Vec<String>>,
    /// Matches the event's `agentId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub agents: Option<Vec<String>>,
}

impl Filters {
    /// Whether an event with this canonical `payload` passes every present filter key.
    ///
    /// `campaigns` looks at `campaignId`, `outcomes` at `outcome`, `agents` at `agentId`; strings
    /// and numbers compare by their text. A present key never matches an event without the field.
    pub fn matches(&self, payload: &serde_json::Value) -> bool {
        let passes = |allowed: &Option<Vec<String>>, field: &str| match allowed {
            None => true,
            Some(allowed) => match payload.get(field) {
                Some(serde_json::Value::String(s)) => allowed.iter().any(|a| a == s),
                Some(serde_json::Value::Number(n)) => {
                    let n = n.to_string();
                    allowed.contains(&n)
                }
                _ => false,
            },
        };
        passes(&self.campaigns, "campaignId")
            && passes(&self.outcomes, "outcome")
            && passes(&self.agents, "agentId")
    }
}

/// Ordered delivery of a configuration: its events are delivered one key value at a time, in
/// the order they were accepted (`core::queue::ordered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(
    feature = "openapi",
    oai(rename = "Ordering", rename_all = "camelCase")
)]
#[serde(rename_all = "camelCase")]
pub struct Ordering {
    /// JSON Pointer (RFC 6901) into the event payload whose value is the ordering key, e.g.
    /// `/callId`.
    pub key: String,
    /// What happens when the head of a key is not delivered within `maxHoldSeconds`.
    pub on_stuck: OnStuck,
    /// How long the head of a key may hold it before `onStuck` applies, in seconds.
    pub max_hold_seconds: u32,
}

/// The longest ordering key value kept; a longer value orders nothing (delivered unordered).
pub const MAX_ORDERING_KEY_BYTES: usize = 255;

impl Ordering {
    /// The default `maxHoldSeconds`.
    pub const DEFAULT_MAX_HOLD_SECONDS: u32 = 300;

    /// The ordering key of an event with this `payload`: the value at the pointer, a string as
    /// it is or a number as its text; `None` when there is no such value, it is of another JSON
    /// type, empty, or longer than [`MAX_ORDERING_KEY_BYTES`].
    pub fn key_of(&self, payload: &serde_json::Value) -> Option<String> {
        let text = match payload.pointer(&self.key)? {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        (!text.is_empty() && text.len() <= MAX_ORDERING_KEY_BYTES).then_some(text)
    }
}

/// What an ordered key does while its head is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum OnStuck {
    /// After `maxHoldSeconds` the next event goes; the head keeps retrying and arrives late.
    #[default]
    Detach,
    /// The key waits until its head is delivered, or skipped by an operator; a head that
    /// failed for good keeps it blocked until it is retried or skipped.
    Block,
}

impl OnStuck {
    /// The text stored in the configuration's JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Detach => "detach",
            Self::Block => "block",
        }
    }
}

/// What the receiver answered to the latest attempt of an outbound event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, FromJsonQueryResult)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase"))]
#[serde(rename_all = "camelCase")]
pub struct ResponseData {
    /// HTTP status, absent when no response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub status_code: Option<u16>,
    /// First 32 KiB of the response body.
    #[serde(default)]
    pub body: String,
    /// Response headers, lowercase names.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Milliseconds from sending the request to reading the response.
    pub timing: u64,
    /// True when the body was cut at 32 KiB.
    #[serde(default)]
    pub truncated: bool,
    /// Why the attempt failed without a response (timeout, connection refused, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Filters;

    fn filters(value: serde_json::Value) -> Filters {
        serde_json::from_value(value).expect("filters")
    }

    #[test]
    fn empty_filters_match_every_event() {
        assert!(Filters::default().matches(&json!({})));
    }

    #[test]
    fn a_present_key_must_match_its_field() {
        let f = filters(json!({"campaigns": ["c-1", "c-2"]}));
        assert!(f.matches(&json!({"campaignId": "c-2"})));
        assert!(!f.matches(&json!({"campaignId": "c-3"})));
    }

    #[test]
    fn a_present_key_never_matches_an_event_without_the_field() {
        let f = filters(json!({"agents": ["agent-1"]}));
        assert!(!f.matches(&json!({"campaignId": "c-1"})));
    }

    #[test]
    fn every_present_key_must_match() {
        let f = filters(json!({"campaigns": ["c-1"], "outcomes": ["lead_qualified"]}));
        assert!(f.matches(&json!({"campaignId": "c-1", "outcome": "lead_qualified"})));
        assert!(!f.matches(&json!({"campaignId": "c-1", "outcome": "no_answer"})));
    }

    #[test]
    fn the_ordering_key_is_a_string_or_a_number_at_the_pointer() {
        let ordering = super::Ordering {
            key: "/call/id".into(),
            on_stuck: super::OnStuck::Detach,
            max_hold_seconds: 300,
        };
        assert_eq!(
            ordering.key_of(&json!({"call": {"id": "c-1"}})),
            Some("c-1".into())
        );
        assert_eq!(
            ordering.key_of(&json!({"call": {"id": 7}})),
            Some("7".into())
        );
        assert_eq!(ordering.key_of(&json!({"call": {"id": ""}})), None);
        assert_eq!(ordering.key_of(&json!({"call": {"id": true}})), None);
        assert_eq!(ordering.key_of(&json!({"call": {}})), None);
        assert_eq!(
            ordering.key_of(&json!({"call": {"id": "x".repeat(256)}})),
            None
        );
    }

    #[test]
    fn numeric_fields_compare_by_their_text() {
        let f = filters(json!({"campaigns": ["42"]}));
        assert!(f.matches(&json!({"campaignId": 42})));
    }
}
