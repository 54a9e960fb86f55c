//! Reading provider fields and writing the canonical camelCase payload.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A JSON object.
pub(super) type Object = Map<String, Value>;

/// The canonical payload under construction: absent, null and empty-string values are skipped,
/// and the first value written for a key wins.
#[derive(Debug, Default)]
pub(super) struct Payload(Object);

impl Payload {
    /// Writes `value` under `key` unless the key is already set or the value is empty.
    pub(super) fn put(&mut self, key: &str, value: Option<Value>) {
        let Some(value) = value else { return };
        let empty = value.is_null() || value.as_str().is_some_and(str::is_empty);
        if !empty && !self.0.contains_key(key) {
            self.0.insert(key.to_owned(), value);
        }
    }

    /// Writes a string value.
    pub(super) fn put_str(&mut self, key: &str, value: Option<&str>) {
        self.put(key, value.map(|v| Value::String(v.to_owned())));
    }

    /// Writes `campaignId`, `contactId`, `agentId` and `outcome` from the first source that has
    /// each, accepting camelCase and snake_case names.
    ///
    /// `contactId` keeps its JSON type; the others are written as strings (numbers are
    /// converted) so that configuration filters can compare them.
    pub(super) fn put_attribution(&mut self, sources: &[Option<&Object>]) {
        for (key, names) in [
            ("campaignId", &["campaignId", "campaign_id"][..]),
            ("agentId", &["agentId", "agent_id"][..]),
            ("outcome", &["outcome"][..]),
        ] {
            self.put(key, pick(sources, names).and_then(text).map(Value::String));
        }
        self.put(
            "contactId",
            pick(sources, &["contactId", "contact_id"]).cloned(),
        );
    }

    /// The finished payload, always an object.
    pub(super) fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// The first non-null value found under any of `names`, trying each source in turn.
pub(super) fn pick<'a>(sources: &[Option<&'a Object>], names: &[&str]) -> Option<&'a Value> {
    sources.iter().flatten().find_map(|source| {
        names
            .iter()
            .find_map(|name| source.get(*name).filter(|v| !v.is_null()))
    })
}

/// `value[name]` as an object.
pub(super) fn object<'a>(value: Option<&'a Object>, name: &str) -> Option<&'a Object> {
    value?.get(name)?.as_object()
}

/// A string, or a number written as a string.
pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string field of an object.
pub(super) fn str_field<'a>(value: Option<&'a Object>, name: &str) -> Option<&'a str> {
    value?.get(name)?.as_str()
}

/// A number, or a string holding one (form fields are strings), as a JSON number.
pub(super) fn number(value: &Value) -> Option<Value> {
    match value {
        Value::Number(_) => Some(value.clone()),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().map(Value::from).ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Value::from)
            })
        }
        _ => None,
    }
}

/// A number as `f64`, also from a numeric string.
pub(super) fn as_f64(value: &Value) -> Option<f64> {
    number(value)?.as_f64()
}

/// Epoch values below this are seconds, above it milliseconds (year 5138 in seconds).
const MILLIS_THRESHOLD: f64 = 1e11;

/// A timestamp as RFC 3339 UTC text.
///
/// Numbers are Unix time in seconds (fractions allowed) or, above 10^11, milliseconds; zero
/// means "not set". RFC 2822 strings (cXML's format) are converted; other strings are kept.
pub(super) fn time(value: &Value) -> Option<Value> {
    match value {
        Value::Number(_) => as_f64(value).and_then(epoch_to_rfc3339).map(Value::String),
        Value::String(s) => Some(Value::String(
            DateTime::parse_from_rfc2822(s)
                .map(|t| rfc3339(t.with_timezone(&Utc)))
                .unwrap_or_else(|_| s.clone()),
        )),
        _ => None,
    }
}

/// Unix time in seconds or milliseconds as RFC 3339 UTC text; `None` for zero or out of range.
pub(super) fn epoch_to_rfc3339(epoch: f64) -> Option<String> {
    // Range-checked by `from_timestamp_millis`; the cast saturates.
    DateTime::<Utc>::from_timestamp_millis(epoch_millis(epoch)?.round() as i64).map(rfc3339)
}

/// Unix time in seconds or milliseconds, as milliseconds; `None` for zero or less.
pub(super) fn epoch_millis(epoch: f64) -> Option<f64> {
    if epoch <= 0.0 || !epoch.is_finite() {
        None
    } else if epoch >= MILLIS_THRESHOLD {
        Some(epoch)
    } else {
        Some(epoch * 1000.0)
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A call direction: Twilio's `outbound-api` / `outbound-dial` become `outbound`.
pub(super) fn direction(value: &Value) -> Option<Value> {
    let d = value.as_str()?.to_ascii_lowercase();
    let d = if d.starts_with("outbound") {
        "outbound".to_owned()
    } else {
        d
    };
    Some(Value::String(d))
}

/// The platform outcome of a call that ended with this status or end reason.
///
/// Covers cXML statuses (`completed`, `busy`, `failed`, `no-answer`, `canceled`), RELAY end
/// reasons (`hangup`, `busy`, `noAnswer`, `cancel`, `decline`, `error`) and ElevenLabs failure
/// reasons (`busy`, `no-answer`).
pub(super) fn terminal_outcome(status: &str) -> Option<&'static str> {
    match status.to_ascii_lowercase().replace('_', "-").as_str() {
        "completed" | "hangup" => Some("completed"),
        "busy" | "decline" | "declined" => Some("busy"),
        "no-answer" | "noanswer" => Some("no-answer"),
        "canceled" | "cancelled" | "cancel" => Some("canceled"),
        "failed" | "error" => Some("failed"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_first_value_written_for_a_key_wins() {
        let mut p = Payload::default();
        p.put_str("from", Some("+1"));
        p.put_str("from", Some("+2"));
        assert_eq!(p.into_value(), json!({"from": "+1"}));
    }

    #[test]
    fn null_and_empty_values_are_not_written() {
        let mut p = Payload::default();
        p.put("a", Some(Value::Null));
        p.put_str("b", Some(""));
        p.put("c", None);
        assert_eq!(p.into_value(), json!({}));
    }

    #[test]
    fn pick_skips_null_values_and_tries_the_next_source() {
        let a = obj(json!({"campaign_id": null}));
        let b = obj(json!({"campaignId": "c-1"}));
        assert_eq!(
            pick(&[Some(&a), None, Some(&b)], &["campaignId", "campaign_id"]),
            Some(&json!("c-1"))
        );
    }

    #[test]
    fn attribution_reads_snake_case_and_keeps_the_contact_id_type() {
        let meta =
            obj(json!({"campaign_id": 7, "contact_id": 42, "agent_id": "a-1", "outcome": "sale"}));
        let mut p = Payload::default();
        p.put_attribution(&[Some(&meta)]);
        assert_eq!(
            p.into_value(),
            json!({"campaignId": "7", "agentId": "a-1", "outcome": "sale", "contactId": 42})
        );
    }

    #[test]
    fn numeric_strings_become_numbers() {
        assert_eq!(number(&json!("125")), Some(json!(125)));
        assert_eq!(number(&json!("15.5")), Some(json!(15.5)));
        assert_eq!(number(&json!("soon")), None);
    }

    #[test]
    fn epoch_seconds_and_milliseconds_become_rfc3339() {
        assert_eq!(
            time(&json!(1690642800)),
            Some(json!("2023-07-29T15:00:00Z"))
        );
        assert_eq!(
            time(&json!(1690642800000_i64)),
            Some(json!("2023-07-29T15:00:00Z"))
        );
        assert_eq!(
            time(&json!(1690642800.5)),
            Some(json!("2023-07-29T15:00:00.500Z"))
        );
    }

    #[test]
    fn a_zero_epoch_is_not_a_time() {
        assert_eq!(time(&json!(0)), None);
    }

    #[test]
    fn rfc2822_times_become_rfc3339_and_other_strings_are_kept() {
        assert_eq!(
            time(&json!("Wed, 08 Oct 2025 13:54:12 +0000")),
            Some(json!("2025-10-08T13:54:12Z"))
        );
        assert_eq!(
            time(&json!("2023-07-29T15:00:00Z")),
            Some(json!("2023-07-29T15:00:00Z"))
        );
    }

    #[test]
    fn twilio_outbound_directions_become_outbound() {
        assert_eq!(direction(&json!("outbound-api")), Some(json!("outbound")));
        assert_eq!(direction(&json!("Inbound")), Some(json!("inbound")));
    }

    #[test]
    fn end_reasons_map_to_outcomes() {
        assert_eq!(terminal_outcome("hangup"), Some("completed"));
        assert_eq!(terminal_outcome("noAnswer"), Some("no-answer"));
        assert_eq!(terminal_outcome("no_answer"), Some("no-answer"));
        assert_eq!(terminal_outcome("cancel"), Some("canceled"));
        assert_eq!(terminal_outcome("error"), Some("failed"));
        assert_eq!(terminal_outcome("ringing"), None);
    }
}
