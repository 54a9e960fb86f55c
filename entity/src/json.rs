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
