//! Domain types parsed from request DTOs at the edge: past this module, a value that exists is valid.

use std::collections::{BTreeMap, BTreeSet};

use entity::{EventType, EventTypes, Filters, Headers, RetryPolicy};
use poem::http::{HeaderName, HeaderValue};
use url::Url;

use crate::error::ApiError;

pub use wirehook_core::attempt::RESERVED_HEADERS;

const MAX_HEADERS: usize = 32;
const MAX_URL_LEN: usize = 2048;
const MAX_FILTER_VALUES: usize = 1000;
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Deepest nesting of arrays and objects accepted in stored JSON (payloads, metadata, provider
/// bodies). The history wraps stored JSON a few levels deeper, and common JSON parsers
/// (serde_json among them) refuse documents nested more than 128 levels, so anything close to
/// that limit would make the history unreadable for API clients.
pub const MAX_JSON_DEPTH: usize = 64;

/// Magnitude from which a number is refused: PostgreSQL keeps a JSON number's decimal digits,
/// and serde_json cannot read some of them back (e.g. `1.7976931348623157e308`).
const MAX_JSON_NUMBER: f64 = 1e308;

/// Why a JSON document cannot be stored and read back as it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnstorableJson {
    /// Arrays and objects nest deeper than [`MAX_JSON_DEPTH`].
    #[error("must be nested at most {MAX_JSON_DEPTH} levels deep")]
    TooDeep,
    /// A string or key holds a NUL character, which PostgreSQL cannot store.
    #[error("must not contain NUL characters (\\u0000)")]
    NulCharacter,
    /// A number of magnitude 1e308 or more, which would not read back from the database.
    #[error("must not contain numbers of magnitude 1e308 or more")]
    NumberTooLarge,
}

/// Checks that `value` can be stored in PostgreSQL and read back by the api and its clients.
pub fn storable_json(value: &serde_json::Value) -> Result<(), UnstorableJson> {
    use serde_json::Value;
    let mut pending = vec![(value, 1)];
    while let Some((value, level)) = pending.pop() {
        match value {
            Value::Array(_) | Value::Object(_) if level > MAX_JSON_DEPTH => {
                return Err(UnstorableJson::TooDeep);
            }
            Value::Array(items) => pending.extend(items.iter().map(|item| (item, level + 1))),
            Value::Object(fields) => {
                if fields.keys().any(|key| key.contains('\0')) {
                    return Err(UnstorableJson::NulCharacter);
                }
                pending.extend(fields.values().map(|field| (field, level + 1)));
            }
            Value::String(s) if s.contains('\0') => return Err(UnstorableJson::NulCharacter),
            Value::Number(n) if n.as_f64().is_some_and(|f| f.abs() >= MAX_JSON_NUMBER) => {
                return Err(UnstorableJson::NumberTooLarge);
            }
            _ => {}
        }
    }
    Ok(())
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Validation(msg.into())
}

/// A configuration name: 1–255 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigName(String);

impl TryFrom<String> for ConfigName {
    type Error = ApiError;

    fn try_from(name: String) -> Result<Self, ApiError> {
        let len = name.chars().count();
        if name.trim().is_empty() || len > 255 {
            return Err(invalid("`name` must be 1 to 255 characters and not blank"));
        }
        Ok(Self(name))
    }
}

impl ConfigName {
    /// The name as stored.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An absolute http(s) URL with a host, where deliveries are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(Url);

impl TryFrom<String> for TargetUrl {
    type Error = ApiError;

    fn try_from(raw: String) -> Result<Self, ApiError> {
        if raw.len() > MAX_URL_LEN {
            return Err(invalid(format!(
                "`url` must be at most {MAX_URL_LEN} characters"
            )));
        }
        let url = Url::parse(raw.trim())
            .map_err(|e| invalid(format!("`url` is not an absolute URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("`url` must use http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("`url` must have a host"));
        }
        Ok(Self(url))
    }
}

impl TargetUrl {
    /// The normalized URL text.
    pub fn into_inner(self) -> String {
        self.0.into()
    }
}

/// Subscribed event types: at least one, duplicates removed, catalog order kept as given.
pub fn event_types(types: Vec<EventType>) -> Result<EventTypes, ApiError> {
    if types.is_empty() {
        return Err(invalid("`eventTypes` must name at least one event type"));
    }
    let mut seen = BTreeSet::new();
    let names = types
        .into_iter()
        .filter(|t| seen.insert(*t))
        .map(|t| t.as_str().to_owned())
        .collect();
    Ok(EventTypes(names))
}

/// Custom headers: valid names and values, not reserved, no name twice in any case, at most 32;
/// names kept exactly as given.
pub fn custom_headers(headers: BTreeMap<String, String>) -> Result<Headers, ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid(format!(
            "`headers` may hold at most {MAX_HEADERS} entries"
        )));
    }
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (name, value) in headers {
        let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            invalid(format!(
                "header name `{}` is not a valid HTTP header name",
                name.escape_debug()
            ))
        })?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(invalid(format!(
                "header `{name}` is set by wirehook and cannot be overridden"
            )));
        }
        HeaderValue::from_str(&value).map_err(|_| {
            invalid(format!(
                "the value of header `{name}` contains characters not allowed in HTTP headers"
            ))
        })?;
        // HTTP compares names case-insensitively (`HeaderName` is the lower-cased form), but the
        // API keeps the name as given so a client can read back exactly what it wrote.
        if !seen.insert(parsed.as_str().to_owned()) {
            return Err(invalid(format!(
                "header `{name}` is given twice (names are case-insensitive)"
            )));
        }
        out.insert(name, value);
    }
    Ok(Headers(out))
}

/// A retry policy within bounds: 1–50 attempts, delays 1 s–7 days, maxDelay ≥ initialDelay, factor 1–10.
pub fn retry_policy(p: RetryPolicy) -> Result<RetryPolicy, ApiError> {
    const WEEK: u32 = 7 * 86_400;
    if !(1..=50).contains(&p.max_attempts) {
        return Err(invalid(
            "`retryConfig.maxAttempts` must be between 1 and 50",
        ));
    }
    if !(1..=WEEK).contains(&p.initial_delay) {
        return Err(invalid(
            "`retryConfig.initialDelay` must be between 1 and 604800 seconds",
        ));
    }
    if !(1..=WEEK).contains(&p.max_delay) {
        return Err(invalid(
            "`retryConfig.maxDelay` must be between 1 and 604800 seconds",
        ));
    }
    if p.max_delay < p.initial_delay {
        return Err(invalid(
            "`retryConfig.maxDelay` must be at least `initialDelay`",
        ));
    }
    if !(p.backoff_factor.is_finite() && (1.0..=10.0).contains(&p.backoff_factor)) {
        return Err(invalid(
            "`retryConfig.backoffFactor` must be between 1 and 10",
        ));
    }
    Ok(p)
}

/// Filters: each given list non-empty, values non-blank.
pub fn filters(f: Filters) -> Result<Filters, ApiError> {
    for (key, values) in [
        ("campaigns", &f.campaigns),
        ("outcomes", &f.outcomes),
        ("agents", &f.agents),
    ] {
        if let Some(values) = values {
            if values.is_empty() || values.len() > MAX_FILTER_VALUES {
                return Err(invalid(format!(
                    "`filters.{key}` must hold 1 to {MAX_FILTER_VALUES} values; omit the key to match all"
                )));
            }
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(invalid(format!(
                    "`filters.{key}` must not contain blank values"
                )));
            }
        }
    }
    Ok(f)
}

/// Metadata: any JSON object up to 16 KiB that [`storable_json`] accepts.
pub fn metadata(m: BTreeMap<String, serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    let value = serde_json::Value::Object(m.into_iter().collect());
    if value.to_string().len() > MAX_METADATA_BYTES {
        return Err(invalid("`metadata` must be at most 16 KiB of JSON"));
    }
    storable_json(&value).map_err(|e| invalid(format!("`metadata` {e}")))?;
    Ok(value)
}

/// An ordering key: a JSON Pointer (RFC 6901) to a member of the payload, at most 255
/// characters. Refused: the empty pointer (the whole payload is an object, never a key) and
/// anything not starting with `/`, which is a constant rather than a pointer and would order
/// every event of the configuration as one key (one stuck event would hold all of them).
pub fn ordering_pointer(key: String) -> Result<String, ApiError> {
    if key.len() > entity::MAX_ORDERING_KEY_BYTES {
        return Err(invalid("`ordering.key` must be at most 255 characters"));
    }
    if key.contains('\0') {
        return Err(invalid("`ordering.key` must not contain NUL characters"));
    }
    if !key.starts_with('/') || key == "/" {
        return Err(invalid(format!(
            "`ordering.key` must be a JSON Pointer into the event payload such as `/callId`; \
             `{}` is a constant, which would put every event in one key",
            key.escape_debug()
        )));
    }
    for token in key[1..].split('/') {
        if token.is_empty() {
            return Err(invalid(
                "`ordering.key` must not contain an empty reference token (`//` or a trailing `/`)",
            ));
        }
        let mut chars = token.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(invalid(
                    "`ordering.key` has a `~` not followed by 0 or 1 (RFC 6901 escapes are ~0 and ~1)",
                ));
            }
        }
    }
    Ok(key)
}

/// A signing secret: the given one if Standard Webhooks can use it, else a generated one.
pub fn secret(given: Option<String>) -> Result<String, ApiError> {
    match given {
        None => Ok(wirehook_core::signing::generate_secret()),
        Some(s) => {
            wirehook_core::signing::SigningKey::from_secret(&s).map_err(|e| {
                invalid(format!(
                    "`secret` {e}; use `whsec_` followed by base64, or omit it to have one generated"
                ))
            })?;
            Ok(s)
        }
    }
}

/// Whether two secrets are the same text, compared in constant time (a secret is never compared
/// with `==`, which stops at the first differing byte).
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_name_is_refused() {
        assert!(ConfigName::try_from("   ".to_owned()).is_err());
        assert!(ConfigName::try_from("x".repeat(256)).is_err());
        assert!(ConfigName::try_from("é".repeat(255)).is_ok());
    }

    #[test]
    fn target_url_must_be_absolute_http() {
        assert!(TargetUrl::try_from("ftp://example.com".to_owned()).is_err());
        assert!(TargetUrl::try_from("/relative".to_owned()).is_err());
        assert!(TargetUrl::try_from("https://example.com/hook".to_owned()).is_ok());
    }

    #[test]
    fn reserved_and_crlf_headers_are_refused() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(custom_headers(one("Webhook-Signature", "x")).is_err());
        assert!(custom_headers(one("Content-Type", "text/plain")).is_err());
        assert!(custom_headers(one("X-Ok", "a\r\nInjected: yes")).is_err());
        assert!(custom_headers(one("Bad Name", "x")).is_err());
        assert!(custom_headers(one("X-API-Key", "abc")).is_ok());
    }

    #[test]
    fn retry_policy_bounds_hold() {
        let ok = RetryPolicy::default();
        assert!(retry_policy(ok).is_ok());
        assert!(
            retry_policy(RetryPolicy {
                max_attempts: 0,
                ..ok
            })
            .is_err()
        );
        assert!(
            retry_policy(RetryPolicy {
                max_attempts: 51,
                ..ok
            })
            .is_err()
        );
        assert!(
            retry_policy(RetryPolicy {
                initial_delay: 0,
                ..ok
            })
            .is_err()
        );
        assert!(
            retry_policy(RetryPolicy {
                max_delay: 10,
                initial_delay: 20,
                ..ok
            })
            .is_err()
        );
        assert!(
            retry_policy(RetryPolicy {
                backoff_factor: 0.5,
                ..ok
            })
            .is_err()
        );
        assert!(
            retry_policy(RetryPolicy {
                backoff_factor: f64::NAN,
                ..ok
            })
            .is_err()
        );
    }

    #[test]
    fn duplicate_event_types_collapse() {
        let t = event_types(vec![EventType::CallCompleted, EventType::CallCompleted]).unwrap();
        assert_eq!(t.0, vec!["call.completed".to_owned()]);
        assert!(event_types(vec![]).is_err());
    }

    #[test]
    fn storable_json_refuses_nul_characters_in_keys_and_nested_strings() {
        use serde_json::json;
        assert_eq!(storable_json(&json!({"a": ["b", 1, {"c": null}]})), Ok(()));
        assert_eq!(
            storable_json(&json!({"a": [{"c": "x\u{0}"}]})),
            Err(UnstorableJson::NulCharacter)
        );
        assert_eq!(
            storable_json(&json!({"a\u{0}": 1})),
            Err(UnstorableJson::NulCharacter)
        );
    }

    #[test]
    fn storable_json_refuses_numbers_that_would_not_read_back() {
        use serde_json::json;
        assert_eq!(
            storable_json(&json!([1e307, -1e307, 5e-324, u64::MAX])),
            Ok(())
        );
        for huge in [f64::MAX, -f64::MAX, 1e308] {
            assert_eq!(
                storable_json(&json!({"n": huge})),
                Err(UnstorableJson::NumberTooLarge)
            );
        }
    }

    #[test]
    fn metadata_nested_deeper_than_the_limit_is_refused() {
        let nested = |levels: usize| {
            let mut value = serde_json::json!(1);
            for _ in 1..levels {
                value = serde_json::json!([value]);
            }
            BTreeMap::from([("deep".to_owned(), value)])
        };
        // `nested(n)` is n levels: the map and n - 1 arrays.
        assert!(metadata(nested(MAX_JSON_DEPTH)).is_ok());
        assert!(metadata(nested(MAX_JSON_DEPTH + 1)).is_err());
    }

    #[test]
    fn ordering_keys_must_be_pointers_to_a_member() {
        assert_eq!(
            ordering_pointer("/callId".into()).ok(),
            Some("/callId".into())
        );
        assert!(ordering_pointer("/call/id~1x~0".into()).is_ok());
        for constant in ["callId", "", "/", "//", "/a/", "/a~2", "/a~"] {
            assert!(ordering_pointer(constant.into()).is_err(), "{constant}");
        }
        assert!(ordering_pointer(format!("/{}", "x".repeat(255))).is_err());
    }

    #[test]
    fn empty_filter_list_is_refused() {
        let f = Filters {
            campaigns: Some(vec![]),
            ..Filters::default()
        };
        assert!(filters(f).is_err());
    }
}
