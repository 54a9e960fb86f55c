//! SignalWire bodies: the contract's JSON shape, RELAY events and cXML form callbacks.
//!
//! | body | provider type | event type |
//! |---|---|---|
//! | JSON `event_type` naming a SignalWire catalog type | as given | that type |
//! | RELAY `calling.call.state` (or `call.state`), `call_state`/`state` | as given | `created` → `call.created`, `ringing` → `call.ringing`, `answered` → `call.answered`, `ended` → `call.completed`; `ending` (always followed by `ended`) → none |
//! | RELAY `calling.call.record` (or `call.record`), `state` | as given | `recording` → `recording.started`, `finished` → `recording.completed`; `paused`, `no_input` → none |
//! | cXML form with `CallStatus` | the status | `queued`/`initiated` → `call.created`, `ringing` → `call.ringing`, `in-progress` → `call.answered`, `completed`/`busy`/`failed`/`no-answer`/`canceled` → `call.completed` |
//! | cXML form with `RecordingStatus` | `recording:<status>` | `in-progress` → `recording.started`, `completed` → `recording.completed`; `absent`, `failed` → none |
//!
//! Identities: the contract's `id`/`event_id`; `<relay type>:<call or control id>:<state>`;
//! `call:<CallSid>:<CallStatus>`; `recording:<RecordingSid>:<RecordingStatus>`.

use entity::{EventType, Source};
use serde_json::Value;

use super::fields::{
    Object, Payload, as_f64, direction, epoch_millis, number, object, pick, str_field,
    terminal_outcome, text, time,
};
use super::{Normalized, Parts, UNKNOWN, catalog_type};

/// A JSON body: RELAY call state or record events, or the contract shape.
pub(super) fn json(body: Object) -> Normalized {
    let top = Some(&body);
    let kind = str_field(top, "event_type").or_else(|| str_field(top, "event"));
    let (event_type, identity, payload) = match kind {
        Some(kind @ ("calling.call.state" | "call.state")) => relay_state(kind, &body),
        Some(kind @ ("calling.call.record" | "call.record")) => relay_record(kind, &body),
        kind => contract(kind, &body),
    };
    Normalized {
        event_type,
        provider_type: kind.unwrap_or(UNKNOWN).to_owned(),
        identity,
        payload: payload.into_value(),
        raw: Value::Object(body),
    }
}

/// The contract's shape: `event_type`, `call_id`, `direction`, `from`, `to`, `state`, `metadata`.
fn contract(kind: Option<&str>, body: &Object) -> Parts {
    let event_type = kind.and_then(|kind| catalog_type(kind, Source::SignalWire));
    let top = Some(body);
    let metadata = object(top, "metadata");
    let status = pick(&[top], &["status", "state", "call_state"]).and_then(text);
    let reason = pick(&[top], &["end_reason", "reason"]).and_then(text);

    let mut p = Payload::default();
    put_text(&mut p, "callId", pick(&[top], &["call_id", "callId"]));
    p.put(
        "direction",
        pick(&[top], &["direction"]).and_then(direction),
    );
    p.put("from", pick(&[top], &["from"]).cloned());
    p.put("to", pick(&[top], &["to"]).cloned());
    p.put_str("status", status.as_deref());
    p.put("duration", pick(&[top], &["duration"]).and_then(number));
    p.put(
        "startTime",
        pick(&[top], &["start_time", "startTime"]).and_then(time),
    );
    p.put(
        "endTime",
        pick(&[top], &["end_time", "endTime"]).and_then(time),
    );
    put_text(
        &mut p,
        "recordingId",
        pick(&[top], &["recording_id", "recordingId"]),
    );
    p.put(
        "recordingUrl",
        pick(&[top], &["recording_url", "recordingUrl"]).cloned(),
    );
    p.put_str("reason", reason.as_deref());
    p.put("error", pick(&[top], &["error"]).cloned());
    p.put_attribution(&[top, metadata]);
    if event_type == Some(EventType::CallCompleted) {
        let derived = reason
            .iter()
            .chain(&status)
            .find_map(|s| terminal_outcome(s));
        p.put_str("outcome", derived);
    }
    p.put("timestamp", pick(&[top], &["timestamp"]).and_then(time));
    p.put("metadata", body.get("metadata").cloned());

    let identity = pick(&[top], &["id", "event_id"]).and_then(text);
    (event_type, identity, p)
}

/// A RELAY `calling.call.state` event (`params.call_state`, or `params.state`).
fn relay_state(kind: &str, body: &Object) -> Parts {
    let top = Some(body);
    let params = object(top, "params");
    let device = object(object(params, "device"), "params");
    let metadata = object(top, "metadata").or_else(|| object(params, "metadata"));
    let call_id = pick(&[params], &["call_id"]).and_then(text);
    let state = str_field(params, "call_state").or_else(|| str_field(params, "state"));
    let event_type = match state {
        Some("created") => Some(EventType::CallCreated),
        Some("ringing") => Some(EventType::CallRinging),
        Some("answered") => Some(EventType::CallAnswered),
        Some("ended") => Some(EventType::CallCompleted),
        _ => None,
    };
    let reason = str_field(params, "end_reason");

    let mut p = Payload::default();
    p.put_str("callId", call_id.as_deref());
    p.put(
        "direction",
        pick(&[params], &["direction"]).and_then(direction),
    );
    p.put(
        "from",
        pick(&[device, params], &["from_number", "from"]).cloned(),
    );
    p.put("to", pick(&[device, params], &["to_number", "to"]).cloned());
    p.put_str("status", state);
    p.put("duration", pick(&[params], &["duration"]).and_then(number));
    p.put("duration", answered_seconds(params).map(Value::from));
    p.put("startTime", pick(&[params], &["start_time"]).and_then(time));
    p.put("endTime", pick(&[params], &["end_time"]).and_then(time));
    p.put_str("reason", reason);
    p.put_attribution(&[top, metadata, params]);
    if event_type == Some(EventType::CallCompleted) {
        p.put_str("outcome", reason.and_then(terminal_outcome));
    }
    p.put("timestamp", pick(&[top], &["timestamp"]).and_then(time));
    p.put("metadata", metadata.cloned().map(Value::Object));

    let identity = call_id.map(|id| format!("{kind}:{id}:{}", state.unwrap_or_default()));
    (event_type, identity, p)
}

/// Seconds from `answer_time` to `end_time` (RELAY sends epoch milliseconds), if both are set.
fn answered_seconds(params: Option<&Object>) -> Option<i64> {
    let at = |name| {
        pick(&[params], &[name])
            .and_then(as_f64)
            .and_then(epoch_millis)
    };
    let (answered, ended) = (at("answer_time")?, at("end_time")?);
    // A bounded, non-negative number of seconds; the cast cannot truncate meaningfully.
    (ended >= answered).then(|| ((ended - answered) / 1000.0).round() as i64)
}

/// A RELAY `calling.call.record` event (`params.state`, with `url` and `duration` when done).
fn relay_record(kind: &str, body: &Object) -> Parts {
    let top = Some(body);
    let params = object(top, "params");
    let record = object(params, "record");
    let metadata = object(top, "metadata").or_else(|| object(params, "metadata"));
    let state = str_field(params, "state");
    let event_type = match state {
        Some("recording") => Some(EventType::RecordingStarted),
        Some("finished") => Some(EventType::RecordingCompleted),
        _ => None,
    };
    let call_id = pick(&[params], &["call_id"]).and_then(text);
    let control_id = pick(&[params], &["control_id"]).and_then(text);

    let mut p = Payload::default();
    p.put_str("callId", call_id.as_deref());
    p.put_str("recordingId", control_id.as_deref());
    p.put("recordingUrl", pick(&[params, record], &["url"]).cloned());
    p.put_str("status", state);
    p.put(
        "duration",
        pick(&[params, record], &["duration"]).and_then(number),
    );
    p.put_attribution(&[top, metadata, params]);
    p.put("timestamp", pick(&[top], &["timestamp"]).and_then(time));
    p.put("metadata", metadata.cloned().map(Value::Object));

    let identity = control_id
        .or(call_id)
        .map(|id| format!("{kind}:{id}:{}", state.unwrap_or_default()));
    (event_type, identity, p)
}

/// A cXML (Twilio-compatible) form callback: a recording status or a call status.
pub(super) fn form(fields: Vec<(String, String)>) -> Normalized {
    let raw = form_object(fields);
    let top = Some(&raw);
    let (provider_type, (event_type, identity, payload)) =
        if let Some(status) = str_field(top, "RecordingStatus") {
            (format!("recording:{status}"), cxml_recording(status, &raw))
        } else if let Some(status) = str_field(top, "CallStatus") {
            (status.to_owned(), cxml_call(status, &raw))
        } else {
            (UNKNOWN.to_owned(), cxml_call("", &raw))
        };
    Normalized {
        event_type,
        provider_type,
        identity,
        payload: payload.into_value(),
        raw: Value::Object(raw),
    }
}

/// A call status callback (`CallSid`, `CallStatus`, `From`, `To`, `Direction`, ...).
fn cxml_call(status: &str, fields: &Object) -> Parts {
    let top = Some(fields);
    let event_type = match status {
        "queued" | "initiated" => Some(EventType::CallCreated),
        "ringing" => Some(EventType::CallRinging),
        "in-progress" | "answered" => Some(EventType::CallAnswered),
        "completed" | "busy" | "failed" | "no-answer" | "canceled" => {
            Some(EventType::CallCompleted)
        }
        _ => None,
    };
    let call_sid = str_field(top, "CallSid");

    let mut p = Payload::default();
    p.put_str("callId", call_sid);
    p.put(
        "direction",
        pick(&[top], &["Direction"]).and_then(direction),
    );
    p.put("from", pick(&[top], &["From"]).cloned());
    p.put("to", pick(&[top], &["To"]).cloned());
    p.put_str("status", Some(status));
    p.put(
        "duration",
        pick(&[top], &["CallDuration", "Duration"]).and_then(number),
    );
    p.put_str("recordingId", str_field(top, "RecordingSid"));
    p.put_str("recordingUrl", str_field(top, "RecordingUrl"));
    p.put_attribution(&[top]);
    if event_type == Some(EventType::CallCompleted) {
        p.put_str("outcome", terminal_outcome(status));
    }
    p.put("timestamp", pick(&[top], &["Timestamp"]).and_then(time));

    let identity = call_sid
        .filter(|_| !status.is_empty())
        .map(|sid| format!("call:{sid}:{status}"));
    (event_type, identity, p)
}

/// A recording status callback (`RecordingSid`, `RecordingStatus`, `RecordingUrl`, ...).
fn cxml_recording(status: &str, fields: &Object) -> Parts {
    let top = Some(fields);
    let event_type = match status {
        "in-progress" => Some(EventType::RecordingStarted),
        "completed" => Some(EventType::RecordingCompleted),
        _ => None,
    };
    let recording_sid = str_field(top, "RecordingSid");

    let mut p = Payload::default();
    p.put_str("callId", str_field(top, "CallSid"));
    p.put_str("recordingId", recording_sid);
    p.put_str("recordingUrl", str_field(top, "RecordingUrl"));
    p.put_str("status", Some(status));
    p.put(
        "duration",
        pick(&[top], &["RecordingDuration"]).and_then(number),
    );
    p.put(
        "startTime",
        pick(&[top], &["RecordingStartTime"]).and_then(time),
    );
    p.put_attribution(&[top]);
    p.put("timestamp", pick(&[top], &["Timestamp"]).and_then(time));

    let identity = recording_sid
        .or_else(|| str_field(top, "CallSid"))
        .map(|sid| format!("recording:{sid}:{status}"));
    (event_type, identity, p)
}

/// The form's fields as an object of strings; a repeated name holds an array of its values.
fn form_object(fields: Vec<(String, String)>) -> Object {
    let mut object = Object::new();
    for (name, value) in fields {
        match object.get_mut(&name) {
            None => {
                object.insert(name, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => {
                let first = first.take();
                object.insert(name, Value::Array(vec![first, Value::String(value)]));
            }
        }
    }
    object
}

/// Writes a string or number field as a string.
fn put_text(p: &mut Payload, key: &str, value: Option<&Value>) {
    p.put(key, value.and_then(text).map(Value::String));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::signalwire;
    use super::*;

    const JSON: Option<&str> = Some("application/json");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn from_json(body: &Value) -> Normalized {
        signalwire(JSON, body.to_string().as_bytes()).unwrap()
    }

    fn from_form(fields: &[(&str, &str)]) -> Normalized {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        signalwire(FORM, body.as_bytes()).unwrap()
    }

    fn relay_state_body(state: &str) -> Value {
        json!({
            "event_type": "calling.call.state",
            "event_channel": "signalwire_2b8a5f6b",
            "timestamp": 1690642800.123,
            "project_id": "p-1",
            "space_id": "s-1",
            "params": {
                "node_id": "n-1",
                "call_id": "c9f1b6e2-0d7b-4a5e-9a1d-3f5b2c1d0e9f",
                "tag": "campaign-123",
                "direction": "outbound",
                "device": {"type": "phone", "params": {"from_number": "+18005551234", "to_number": "+18005557890"}},
                "call_state": state,
            }
        })
    }

    #[test]
    fn the_contract_call_created_example_normalizes() {
        let body = json!({
            "event_type": "call.created",
            "timestamp": "2023-07-29T15:00:00Z",
            "call_id": "CA123456789abcdef",
            "direction": "outbound",
            "from": "+18005551234",
            "to": "+18005557890",
            "state": "created",
            "metadata": {"campaignId": "campaign-123", "contactId": 42}
        });
        let n = from_json(&body);
        assert_eq!(n.event_type, Some(EventType::CallCreated));
        assert_eq!(n.provider_type, "call.created");
        assert_eq!(n.identity, None);
        assert_eq!(
            n.payload,
            json!({
                "callId": "CA123456789abcdef",
                "direction": "outbound",
                "from": "+18005551234",
                "to": "+18005557890",
                "status": "created",
                "campaignId": "campaign-123",
                "contactId": 42,
                "timestamp": "2023-07-29T15:00:00Z",
                "metadata": {"campaignId": "campaign-123", "contactId": 42}
            })
        );
        assert_eq!(n.raw, body);
    }

    #[test]
    fn a_contract_completed_call_keeps_the_outcome_from_metadata() {
        let n = from_json(&json!({
            "event_type": "call.completed",
            "call_id": "CA1",
            "state": "completed",
            "duration": 125,
            "start_time": "2023-07-29T10:15:00Z",
            "end_time": "2023-07-29T10:17:05Z",
            "metadata": {"campaign_id": "campaign-123", "agent_id": "agent-7", "outcome": "appointment_set"}
        }));
        assert_eq!(n.event_type, Some(EventType::CallCompleted));
        assert_eq!(n.payload["outcome"], "appointment_set");
        assert_eq!(n.payload["campaignId"], "campaign-123");
        assert_eq!(n.payload["agentId"], "agent-7");
        assert_eq!(n.payload["duration"], 125);
        assert_eq!(n.payload["startTime"], "2023-07-29T10:15:00Z");
        assert_eq!(n.payload["endTime"], "2023-07-29T10:17:05Z");
    }

    #[test]
    fn a_contract_completed_call_without_an_outcome_derives_it_from_the_state() {
        let n = from_json(
            &json!({"event_type": "call.completed", "call_id": "CA1", "state": "completed"}),
        );
        assert_eq!(n.payload["outcome"], "completed");
    }

    #[test]
    fn a_contract_event_id_is_the_identity() {
        let n = from_json(&json!({"event_type": "call.ringing", "id": "evt-9", "call_id": "CA1"}));
        assert_eq!(n.identity.as_deref(), Some("evt-9"));
    }

    #[test]
    fn every_signalwire_catalog_type_passes_through() {
        for t in EventType::ALL
            .iter()
            .filter(|t| t.source() == Source::SignalWire)
        {
            let n = from_json(&json!({"event_type": t.as_str(), "call_id": "CA1"}));
            assert_eq!(n.event_type, Some(*t));
        }
    }

    #[test]
    fn an_unknown_event_type_is_ignored_not_an_error() {
        let n = from_json(&json!({"event_type": "call.exploded", "call_id": "CA1"}));
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "call.exploded");
        assert_eq!(n.payload["callId"], "CA1");
    }

    #[test]
    fn an_elevenlabs_type_sent_to_signalwire_is_ignored() {
        let n = from_json(&json!({"event_type": "agent.ready"}));
        assert_eq!(n.event_type, None);
    }

    #[test]
    fn a_json_body_without_a_type_is_unknown() {
        let n = from_json(&json!({"hello": "world"}));
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "unknown");
        assert_eq!(n.payload, json!({}));
    }

    #[test]
    fn relay_call_states_map_to_call_events() {
        for (state, expected) in [
            ("created", Some(EventType::CallCreated)),
            ("ringing", Some(EventType::CallRinging)),
            ("answered", Some(EventType::CallAnswered)),
            ("ending", None),
            ("ended", Some(EventType::CallCompleted)),
        ] {
            let n = from_json(&relay_state_body(state));
            assert_eq!(n.event_type, expected, "state {state}");
            assert_eq!(n.provider_type, "calling.call.state");
        }
    }

    #[test]
    fn a_relay_answered_state_carries_the_call_fields() {
        let n = from_json(&relay_state_body("answered"));
        assert_eq!(
            n.payload,
            json!({
                "callId": "c9f1b6e2-0d7b-4a5e-9a1d-3f5b2c1d0e9f",
                "direction": "outbound",
                "from": "+18005551234",
                "to": "+18005557890",
                "status": "answered",
                "timestamp": "2023-07-29T15:00:00.123Z"
            })
        );
        assert_eq!(
            n.identity.as_deref(),
            Some("calling.call.state:c9f1b6e2-0d7b-4a5e-9a1d-3f5b2c1d0e9f:answered")
        );
    }

    #[test]
    fn a_relay_ended_state_has_times_duration_reason_and_outcome() {
        let mut body = relay_state_body("ended");
        let params = body["params"].as_object_mut().unwrap();
        params.insert("start_time".into(), json!(1690642800000_i64));
        params.insert("answer_time".into(), json!(1690642805000_i64));
        params.insert("end_time".into(), json!(1690642930400_i64));
        params.insert("end_reason".into(), json!("hangup"));
        let n = from_json(&body);
        assert_eq!(n.payload["startTime"], "2023-07-29T15:00:00Z");
        assert_eq!(n.payload["endTime"], "2023-07-29T15:02:10.400Z");
        assert_eq!(n.payload["duration"], 125);
        assert_eq!(n.payload["reason"], "hangup");
        assert_eq!(n.payload["outcome"], "completed");
    }

    #[test]
    fn a_relay_call_that_was_not_answered_has_no_duration() {
        let mut body = relay_state_body("ended");
        let params = body["params"].as_object_mut().unwrap();
        params.insert("answer_time".into(), json!(0));
        params.insert("end_time".into(), json!(1690642930400_i64));
        params.insert("end_reason".into(), json!("noAnswer"));
        let n = from_json(&body);
        assert_eq!(n.payload.get("duration"), None);
        assert_eq!(n.payload["outcome"], "no-answer");
    }

    #[test]
    fn an_empty_relay_end_reason_is_left_out() {
        let mut body = relay_state_body("answered");
        body["params"]["end_reason"] = json!("");
        assert_eq!(from_json(&body).payload.get("reason"), None);
    }

    #[test]
    fn the_design_vector_shape_is_a_call_state_event() {
        let body = br#"{"event":"call.state","params":{"call_id":"abc-123","state":"answered"}}"#;
        let n = signalwire(JSON, body).unwrap();
        assert_eq!(n.event_type, Some(EventType::CallAnswered));
        assert_eq!(n.provider_type, "call.state");
        assert_eq!(
            n.payload,
            json!({"callId": "abc-123", "status": "answered"})
        );
        assert_eq!(n.identity.as_deref(), Some("call.state:abc-123:answered"));
    }

    #[test]
    fn relay_metadata_supplies_the_attribution() {
        let mut body = relay_state_body("ended");
        body["metadata"] =
            json!({"campaignId": "campaign-123", "contact_id": "ct-9", "agentId": "agent-4"});
        let n = from_json(&body);
        assert_eq!(n.payload["campaignId"], "campaign-123");
        assert_eq!(n.payload["contactId"], "ct-9");
        assert_eq!(n.payload["agentId"], "agent-4");
        assert_eq!(n.payload["metadata"], body["metadata"]);
    }

    #[test]
    fn a_finished_relay_recording_is_recording_completed() {
        let n = from_json(&json!({
            "event_type": "calling.call.record",
            "timestamp": 1690642930.0,
            "params": {
                "call_id": "c-1",
                "node_id": "n-1",
                "control_id": "rec-7",
                "state": "finished",
                "record": {"audio": {"format": "mp3", "stereo": false, "direction": "both"}},
                "url": "https://files.signalwire.com/rec-7.mp3",
                "duration": 12.5,
                "size": 4096
            }
        }));
        assert_eq!(n.event_type, Some(EventType::RecordingCompleted));
        assert_eq!(
            n.payload,
            json!({
                "callId": "c-1",
                "recordingId": "rec-7",
                "recordingUrl": "https://files.signalwire.com/rec-7.mp3",
                "status": "finished",
                "duration": 12.5,
                "timestamp": "2023-07-29T15:02:10Z"
            })
        );
        assert_eq!(
            n.identity.as_deref(),
            Some("calling.call.record:rec-7:finished")
        );
    }

    #[test]
    fn a_relay_recording_in_progress_is_recording_started() {
        let n = from_json(&json!({
            "event_type": "calling.call.record",
            "params": {"call_id": "c-1", "control_id": "rec-7", "state": "recording"}
        }));
        assert_eq!(n.event_type, Some(EventType::RecordingStarted));
    }

    #[test]
    fn a_relay_recording_url_may_sit_inside_record() {
        let n = from_json(&json!({
            "event_type": "calling.call.record",
            "params": {"call_id": "c-1", "control_id": "r", "state": "finished",
                       "record": {"url": "https://x/rec.mp3", "duration": 3}}
        }));
        assert_eq!(n.payload["recordingUrl"], "https://x/rec.mp3");
        assert_eq!(n.payload["duration"], 3);
    }

    #[test]
    fn a_relay_recording_without_input_is_ignored() {
        let n = from_json(&json!({
            "event_type": "calling.call.record",
            "params": {"call_id": "c-1", "control_id": "r", "state": "no_input"}
        }));
        assert_eq!(n.event_type, None);
    }

    fn completed_call_form(status: &str) -> Vec<(&str, &str)> {
        vec![
            ("AccountSid", "b3877c40-da60-4998-90ad-b792e98472af"),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", "b3877c40-da60-4998-90ad-b792e98472pa"),
            ("CallStatus", status),
            ("Direction", "outbound-api"),
            ("From", "+18005551234"),
            ("To", "+18005557890"),
            ("CallDuration", "125"),
            ("Timestamp", "Sat, 29 Jul 2023 10:17:05 +0000"),
            ("CallbackSource", "call-progress-events"),
            ("SequenceNumber", "3"),
        ]
    }

    #[test]
    fn a_cxml_completed_call_normalizes() {
        let n = from_form(&completed_call_form("completed"));
        assert_eq!(n.event_type, Some(EventType::CallCompleted));
        assert_eq!(n.provider_type, "completed");
        assert_eq!(
            n.payload,
            json!({
                "callId": "b3877c40-da60-4998-90ad-b792e98472pa",
                "direction": "outbound",
                "from": "+18005551234",
                "to": "+18005557890",
                "status": "completed",
                "duration": 125,
                "outcome": "completed",
                "timestamp": "2023-07-29T10:17:05Z"
            })
        );
        assert_eq!(
            n.identity.as_deref(),
            Some("call:b3877c40-da60-4998-90ad-b792e98472pa:completed")
        );
        assert_eq!(n.raw["CallbackSource"], "call-progress-events");
    }

    #[test]
    fn cxml_failed_call_statuses_are_completed_calls_with_that_outcome() {
        for status in ["busy", "failed", "no-answer", "canceled"] {
            let n = from_form(&completed_call_form(status));
            assert_eq!(n.event_type, Some(EventType::CallCompleted), "{status}");
            assert_eq!(n.payload["outcome"], status);
            assert_eq!(n.payload["status"], status);
        }
    }

    #[test]
    fn cxml_progress_statuses_map_to_call_events() {
        for (status, expected) in [
            ("queued", EventType::CallCreated),
            ("initiated", EventType::CallCreated),
            ("ringing", EventType::CallRinging),
            ("in-progress", EventType::CallAnswered),
        ] {
            let n = from_form(&[("CallSid", "CA1"), ("CallStatus", status)]);
            assert_eq!(n.event_type, Some(expected), "{status}");
            assert_eq!(n.payload.get("outcome"), None);
        }
    }

    #[test]
    fn cxml_duration_falls_back_to_duration() {
        let n = from_form(&[
            ("CallSid", "CA1"),
            ("CallStatus", "completed"),
            ("Duration", "2"),
        ]);
        assert_eq!(n.payload["duration"], 2);
    }

    #[test]
    fn a_cxml_completed_recording_normalizes() {
        let n = from_form(&[
            ("AccountSid", "b3877c40-da60-4998-90ad-b792e98472af"),
            ("CallSid", "CA1"),
            ("RecordingSid", "RE1"),
            (
                "RecordingUrl",
                "https://example.signalwire.com/api/laml/2010-04-01/Accounts/a/Recordings/RE1",
            ),
            ("RecordingStatus", "completed"),
            ("RecordingDuration", "42"),
            ("RecordingChannels", "1"),
            ("RecordingStartTime", "Sat, 29 Jul 2023 10:15:00 +0000"),
            ("RecordingSource", "RecordVerb"),
        ]);
        assert_eq!(n.event_type, Some(EventType::RecordingCompleted));
        assert_eq!(n.provider_type, "recording:completed");
        assert_eq!(
            n.payload,
            json!({
                "callId": "CA1",
                "recordingId": "RE1",
                "recordingUrl": "https://example.signalwire.com/api/laml/2010-04-01/Accounts/a/Recordings/RE1",
                "status": "completed",
                "duration": 42,
                "startTime": "2023-07-29T10:15:00Z"
            })
        );
        assert_eq!(n.identity.as_deref(), Some("recording:RE1:completed"));
    }

    #[test]
    fn a_cxml_recording_in_progress_is_recording_started() {
        let n = from_form(&[
            ("CallSid", "CA1"),
            ("RecordingSid", "RE1"),
            ("RecordingStatus", "in-progress"),
        ]);
        assert_eq!(n.event_type, Some(EventType::RecordingStarted));
    }

    #[test]
    fn an_absent_cxml_recording_is_ignored() {
        let n = from_form(&[
            ("CallSid", "CA1"),
            ("RecordingSid", "RE1"),
            ("RecordingStatus", "absent"),
        ]);
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "recording:absent");
    }

    #[test]
    fn a_form_without_a_known_status_is_ignored() {
        let n = from_form(&[("CallSid", "CA1"), ("Digits", "1234")]);
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "unknown");
        assert_eq!(n.identity, None);
    }

    #[test]
    fn a_form_with_an_unknown_call_status_is_ignored() {
        let n = from_form(&[("CallSid", "CA1"), ("CallStatus", "teleported")]);
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "teleported");
    }

    #[test]
    fn form_fields_become_a_raw_object_and_repeats_an_array() {
        let n = from_form(&[("CallSid", "CA1"), ("Tag", "a"), ("Tag", "b"), ("Tag", "c")]);
        assert_eq!(n.raw, json!({"CallSid": "CA1", "Tag": ["a", "b", "c"]}));
    }
}
