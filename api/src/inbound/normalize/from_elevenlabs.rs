//! ElevenLabs bodies: the contract's shape and the real post-call webhooks.
//!
//! | body | provider type | event type |
//! |---|---|---|
//! | `event_type` naming an ElevenLabs catalog type | as given | that type |
//! | `type: post_call_transcription` with `data` | as given | `voice.completed` |
//! | `type: call_initiation_failure` with `data` | as given | `agent.error` |
//! | `type: post_call_audio` (a base64 MP3, nothing to publish) and any other `type` | as given | none |
//!
//! Identities: the contract's `id`/`event_id`; `<type>:<conversation_id>` for post-call
//! webhooks. Post-call attribution (`campaignId`, `contactId`, `agentId`, `outcome`) is read
//! from `data`, then `data.conversation_initiation_client_data.dynamic_variables`, then
//! `data.metadata`; without an explicit `outcome`, a transcription's outcome is
//! `data.analysis.call_successful` (`success`/`failure`/`unknown`) and a failure's is its
//! `failure_reason` (`busy`, `no-answer`, anything else `failed`). `full_audio` is never copied
//! into the payload.

use entity::{EventType, Source};
use serde_json::Value;

use super::fields::{
    Object, Payload, as_f64, direction, epoch_to_rfc3339, number, object, pick, str_field,
    terminal_outcome, text, time,
};
use super::{Normalized, Parts, UNKNOWN, catalog_type};

/// A JSON body: a post-call webhook (`type` + `data`) or the contract shape (`event_type`).
pub(super) fn json(body: Object) -> Normalized {
    let top = Some(&body);
    let post_call = str_field(top, "type").zip(object(top, "data"));
    let kind = match post_call {
        Some((kind, _)) => Some(kind),
        None => str_field(top, "event_type").or_else(|| str_field(top, "type")),
    };
    let (event_type, identity, payload) = match post_call {
        Some((kind, data)) => post_call_event(kind, &body, data),
        None => contract(kind, &body),
    };
    Normalized {
        event_type,
        provider_type: kind.unwrap_or(UNKNOWN).to_owned(),
        identity,
        payload: payload.into_value(),
        raw: Value::Object(body),
    }
}

/// The contract's shape: `event_type`, `voice_id`, `agent_id`, `call_id`, `duration`, `metadata`.
fn contract(kind: Option<&str>, body: &Object) -> Parts {
    let event_type = kind.and_then(|kind| catalog_type(kind, Source::ElevenLabs));
    let top = Some(body);
    let metadata = object(top, "metadata");

    let mut p = Payload::default();
    put_text(&mut p, "callId", pick(&[top], &["call_id", "callId"]));
    put_text(
        &mut p,
        "conversationId",
        pick(&[top], &["conversation_id", "conversationId"]),
    );
    put_text(&mut p, "voiceId", pick(&[top], &["voice_id", "voiceId"]));
    p.put(
        "direction",
        pick(&[top], &["direction"]).and_then(direction),
    );
    p.put("from", pick(&[top], &["from"]).cloned());
    p.put("to", pick(&[top], &["to"]).cloned());
    p.put("status", pick(&[top], &["status", "state"]).cloned());
    p.put("duration", pick(&[top], &["duration"]).and_then(number));
    p.put(
        "startTime",
        pick(&[top], &["start_time", "startTime"]).and_then(time),
    );
    p.put(
        "endTime",
        pick(&[top], &["end_time", "endTime"]).and_then(time),
    );
    p.put("error", pick(&[top], &["error"]).cloned());
    p.put("reason", pick(&[top], &["reason"]).cloned());
    p.put("transcript", pick(&[top], &["transcript"]).cloned());
    p.put_attribution(&[top, metadata]);
    p.put("timestamp", pick(&[top], &["timestamp"]).and_then(time));
    p.put("metadata", body.get("metadata").cloned());

    let identity = pick(&[top], &["id", "event_id"]).and_then(text);
    (event_type, identity, p)
}

/// A post-call webhook: `{"type", "event_timestamp", "data": {...}}`.
fn post_call_event(kind: &str, body: &Object, data: &Object) -> Parts {
    let event_type = match kind {
        "post_call_transcription" => Some(EventType::VoiceCompleted),
        "call_initiation_failure" => Some(EventType::AgentError),
        _ => None,
    };
    let data = Some(data);
    let metadata = object(data, "metadata");
    let client_data = object(data, "conversation_initiation_client_data");
    let dynamic_variables = object(client_data, "dynamic_variables");
    let conversation_id = pick(&[data], &["conversation_id"]).and_then(text);

    let mut p = Payload::default();
    put_text(
        &mut p,
        "callId",
        pick(&[dynamic_variables], &["callId", "call_id"]),
    );
    p.put_str("conversationId", conversation_id.as_deref());
    p.put_attribution(&[data, dynamic_variables, metadata]);
    match kind {
        "post_call_transcription" => transcription(&mut p, data, metadata, client_data),
        "call_initiation_failure" => initiation_failure(&mut p, data, metadata),
        _ => put_text(&mut p, "voiceId", pick(&[data], &["voice_id"])),
    }
    p.put(
        "timestamp",
        pick(&[Some(body)], &["event_timestamp"]).and_then(time),
    );
    p.put("metadata", metadata.cloned().map(Value::Object));

    let identity = conversation_id.map(|id| format!("{kind}:{id}"));
    (event_type, identity, p)
}

/// Fields of a `post_call_transcription`'s `data`.
fn transcription(
    p: &mut Payload,
    data: Option<&Object>,
    metadata: Option<&Object>,
    client_data: Option<&Object>,
) {
    let phone_call = object(metadata, "phone_call");
    put_text(p, "callId", pick(&[phone_call], &["call_sid"]));
    put_phone_parties(p, phone_call);
    p.put("status", pick(&[data], &["status"]).cloned());
    let duration = pick(&[metadata], &["call_duration_secs"]);
    let start = pick(&[metadata], &["start_time_unix_secs"]);
    p.put("duration", duration.and_then(number));
    p.put("startTime", start.and_then(time));
    let end = start.and_then(as_f64).zip(duration.and_then(as_f64));
    p.put(
        "endTime",
        end.and_then(|(start, duration)| epoch_to_rfc3339(start + duration))
            .map(Value::String),
    );
    let override_tts = object(object(client_data, "conversation_config_override"), "tts");
    put_text(p, "voiceId", pick(&[override_tts], &["voice_id"]));
    let analysis = object(data, "analysis");
    p.put(
        "summary",
        pick(&[analysis], &["transcript_summary"]).cloned(),
    );
    put_text(p, "outcome", pick(&[analysis], &["call_successful"]));
    p.put("transcript", pick(&[data], &["transcript"]).cloned());
}

/// `from` and `to` of a phone call, from the agent's and the external party's numbers.
fn put_phone_parties(p: &mut Payload, phone_call: Option<&Object>) {
    let dir = pick(&[phone_call], &["direction"]).and_then(direction);
    let agent = pick(&[phone_call], &["agent_number"]).cloned();
    let external = pick(&[phone_call], &["external_number"]).cloned();
    let (from, to) = match dir.as_ref().and_then(Value::as_str) {
        Some("inbound") => (external, agent),
        Some("outbound") => (agent, external),
        _ => (None, None),
    };
    p.put("direction", dir);
    p.put("from", from);
    p.put("to", to);
}

/// Fields of a `call_initiation_failure`'s `data`; `metadata.body` is the telephony
/// provider's callback (Twilio's form fields, or SIP details).
fn initiation_failure(p: &mut Payload, data: Option<&Object>, metadata: Option<&Object>) {
    let call = object(metadata, "body");
    let reason = pick(&[data], &["failure_reason"]).and_then(text);
    put_text(p, "callId", pick(&[call], &["CallSid", "call_sid"]));
    p.put(
        "direction",
        pick(&[call], &["Direction"]).and_then(direction),
    );
    p.put("from", pick(&[call], &["From", "from_number"]).cloned());
    p.put("to", pick(&[call], &["To", "to_number"]).cloned());
    p.put("status", pick(&[call], &["CallStatus"]).cloned());
    p.put_str("status", reason.as_deref());
    p.put_str("reason", reason.as_deref());
    p.put("error", pick(&[call], &["error_reason"]).cloned());
    let outcome = reason
        .as_deref()
        .map(|r| terminal_outcome(r).unwrap_or("failed"));
    p.put_str("outcome", outcome);
}

/// Writes a string or number field as a string.
fn put_text(p: &mut Payload, key: &str, value: Option<&Value>) {
    p.put(key, value.and_then(text).map(Value::String));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::elevenlabs;
    use super::*;

    fn normalize(body: &Value) -> Normalized {
        elevenlabs(body.to_string().as_bytes()).unwrap()
    }

    /// The documented `post_call_transcription` example, trimmed to one turn per role.
    fn transcription_body() -> Value {
        json!({
            "type": "post_call_transcription",
            "event_timestamp": 1739537297,
            "data": {
                "agent_id": "xyz",
                "conversation_id": "abc",
                "status": "done",
                "user_id": "user123",
                "transcript": [
                    {"role": "agent", "message": "Hey there angelo. How are you?", "time_in_call_secs": 0},
                    {"role": "user", "message": "Hey, can you tell me a fun fact?", "time_in_call_secs": 2}
                ],
                "metadata": {
                    "start_time_unix_secs": 1739537297,
                    "call_duration_secs": 22,
                    "cost": 296,
                    "termination_reason": ""
                },
                "analysis": {
                    "evaluation_criteria_results": {},
                    "data_collection_results": {},
                    "call_successful": "success",
                    "transcript_summary": "Angelo asked for a fun fact."
                },
                "conversation_initiation_client_data": {
                    "conversation_config_override": {"agent": {"language": "en"}, "tts": {"voice_id": null}},
                    "dynamic_variables": {"user_name": "angelo"}
                }
            }
        })
    }

    #[test]
    fn the_contract_voice_completed_example_normalizes() {
        let body = json!({
            "event_type": "voice.completed",
            "timestamp": "2023-07-29T15:05:00Z",
            "voice_id": "voice-123",
            "agent_id": "agent-456",
            "call_id": "CA123456789abcdef",
            "duration": 15.5,
            "metadata": {"campaignId": "campaign-123", "contactId": 42}
        });
        let n = normalize(&body);
        assert_eq!(n.event_type, Some(EventType::VoiceCompleted));
        assert_eq!(n.provider_type, "voice.completed");
        assert_eq!(n.identity, None);
        assert_eq!(
            n.payload,
            json!({
                "callId": "CA123456789abcdef",
                "voiceId": "voice-123",
                "duration": 15.5,
                "campaignId": "campaign-123",
                "agentId": "agent-456",
                "contactId": 42,
                "timestamp": "2023-07-29T15:05:00Z",
                "metadata": {"campaignId": "campaign-123", "contactId": 42}
            })
        );
        assert_eq!(n.raw, body);
    }

    #[test]
    fn every_elevenlabs_catalog_type_passes_through() {
        for t in EventType::ALL
            .iter()
            .filter(|t| t.source() == Source::ElevenLabs)
        {
            assert_eq!(
                normalize(&json!({"event_type": t.as_str()})).event_type,
                Some(*t)
            );
        }
    }

    #[test]
    fn a_contract_agent_error_keeps_its_error() {
        let n = normalize(
            &json!({"event_type": "agent.error", "agent_id": "a", "error": {"code": "llm_timeout"}}),
        );
        assert_eq!(n.event_type, Some(EventType::AgentError));
        assert_eq!(n.payload["error"], json!({"code": "llm_timeout"}));
    }

    #[test]
    fn a_contract_id_or_event_id_is_the_identity() {
        assert_eq!(
            normalize(&json!({"event_type": "agent.ready", "id": "e-1"}))
                .identity
                .as_deref(),
            Some("e-1")
        );
        assert_eq!(
            normalize(&json!({"event_type": "agent.ready", "event_id": 77}))
                .identity
                .as_deref(),
            Some("77")
        );
    }

    #[test]
    fn the_signature_vector_body_is_an_ignored_event_with_an_identity() {
        let n = elevenlabs(br#"{"event_type": "speech.completed", "id": "123456"}"#).unwrap();
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "speech.completed");
        assert_eq!(n.identity.as_deref(), Some("123456"));
    }

    #[test]
    fn a_signalwire_type_sent_to_elevenlabs_is_ignored() {
        assert_eq!(
            normalize(&json!({"event_type": "call.created"})).event_type,
            None
        );
    }

    #[test]
    fn a_post_call_transcription_is_voice_completed() {
        let n = normalize(&transcription_body());
        assert_eq!(n.event_type, Some(EventType::VoiceCompleted));
        assert_eq!(n.provider_type, "post_call_transcription");
        assert_eq!(n.identity.as_deref(), Some("post_call_transcription:abc"));
        let p = &n.payload;
        assert_eq!(p["conversationId"], "abc");
        assert_eq!(p["agentId"], "xyz");
        assert_eq!(p["status"], "done");
        assert_eq!(p["duration"], 22);
        assert_eq!(p["startTime"], "2025-02-14T12:48:17Z");
        assert_eq!(p["endTime"], "2025-02-14T12:48:39Z");
        assert_eq!(p["outcome"], "success");
        assert_eq!(p["summary"], "Angelo asked for a fun fact.");
        assert_eq!(p["timestamp"], "2025-02-14T12:48:17Z");
        assert_eq!(p["transcript"].as_array().map(Vec::len), Some(2));
        assert_eq!(p["metadata"]["cost"], 296);
        assert_eq!(p.get("voiceId"), None);
    }

    #[test]
    fn dynamic_variables_supply_campaign_and_contact() {
        let mut body = transcription_body();
        body["data"]["conversation_initiation_client_data"]["dynamic_variables"] =
            json!({"campaignId": "campaign-123", "contact_id": 42, "callId": "CA9"});
        let p = normalize(&body).payload;
        assert_eq!(p["campaignId"], "campaign-123");
        assert_eq!(p["contactId"], 42);
        assert_eq!(p["callId"], "CA9");
    }

    #[test]
    fn an_explicit_outcome_wins_over_call_successful() {
        let mut body = transcription_body();
        body["data"]["conversation_initiation_client_data"]["dynamic_variables"]["outcome"] =
            json!("appointment_set");
        assert_eq!(normalize(&body).payload["outcome"], "appointment_set");
    }

    #[test]
    fn a_transcription_without_analysis_has_no_outcome() {
        let mut body = transcription_body();
        body["data"].as_object_mut().unwrap().remove("analysis");
        assert_eq!(normalize(&body).payload.get("outcome"), None);
    }

    #[test]
    fn phone_call_metadata_supplies_the_call_and_its_parties() {
        let mut body = transcription_body();
        body["data"]["metadata"]["phone_call"] = json!({
            "direction": "outbound",
            "phone_number_id": "pn-1",
            "agent_number": "+18005551234",
            "external_number": "+18005557890",
            "type": "twilio",
            "call_sid": "CA123"
        });
        let p = normalize(&body).payload;
        assert_eq!(p["callId"], "CA123");
        assert_eq!(p["direction"], "outbound");
        assert_eq!(p["from"], "+18005551234");
        assert_eq!(p["to"], "+18005557890");
    }

    #[test]
    fn an_override_voice_is_the_voice_id() {
        let mut body = transcription_body();
        body["data"]["conversation_initiation_client_data"]["conversation_config_override"]["tts"]
            ["voice_id"] = json!("voice-123");
        assert_eq!(normalize(&body).payload["voiceId"], "voice-123");
    }

    #[test]
    fn a_post_call_audio_is_ignored_and_leaves_the_audio_out_of_the_payload() {
        let n = normalize(&json!({
            "type": "post_call_audio",
            "event_timestamp": 1739537319,
            "data": {"agent_id": "xyz", "conversation_id": "abc", "full_audio": "SUQzBAAAAAAA"}
        }));
        assert_eq!(n.event_type, None);
        assert_eq!(n.identity.as_deref(), Some("post_call_audio:abc"));
        assert_eq!(
            n.payload,
            json!({"conversationId": "abc", "agentId": "xyz", "timestamp": "2025-02-14T12:48:39Z"})
        );
    }

    #[test]
    fn a_twilio_call_initiation_failure_is_an_agent_error() {
        let n = normalize(&json!({
            "type": "call_initiation_failure",
            "event_timestamp": 1759931652,
            "data": {
                "agent_id": "xyz",
                "conversation_id": "abc",
                "failure_reason": "busy",
                "metadata": {
                    "type": "twilio",
                    "body": {
                        "Direction": "outbound-api",
                        "Timestamp": "Wed, 08 Oct 2025 13:54:12 +0000",
                        "CallSid": "CA8367245817625617832576245724",
                        "To": "+441111111111",
                        "CallStatus": "busy",
                        "From": "+11111111111",
                        "CallDuration": "0"
                    }
                }
            }
        }));
        assert_eq!(n.event_type, Some(EventType::AgentError));
        assert_eq!(n.identity.as_deref(), Some("call_initiation_failure:abc"));
        let p = &n.payload;
        assert_eq!(p["callId"], "CA8367245817625617832576245724");
        assert_eq!(p["direction"], "outbound");
        assert_eq!(p["from"], "+11111111111");
        assert_eq!(p["to"], "+441111111111");
        assert_eq!(p["status"], "busy");
        assert_eq!(p["reason"], "busy");
        assert_eq!(p["outcome"], "busy");
        assert_eq!(p["agentId"], "xyz");
        assert_eq!(p["timestamp"], "2025-10-08T13:54:12Z");
        assert_eq!(p["metadata"]["type"], "twilio");
    }

    #[test]
    fn a_sip_call_initiation_failure_reports_the_sip_error() {
        let n = normalize(&json!({
            "type": "call_initiation_failure",
            "event_timestamp": 1759931652,
            "data": {
                "agent_id": "xyz",
                "conversation_id": "abc",
                "failure_reason": "unknown",
                "metadata": {
                    "type": "sip",
                    "body": {
                        "from_number": "+441111111111",
                        "to_number": "+11111111111",
                        "sip_status_code": 486,
                        "error_reason": "INVITE failed: sip status: 486: Busy here (SIP 486)",
                        "call_sid": "d8e7f6a5-b4c3-4d5e-8f9a-0b1c2d3e4f5a"
                    }
                }
            }
        }));
        let p = &n.payload;
        assert_eq!(p["callId"], "d8e7f6a5-b4c3-4d5e-8f9a-0b1c2d3e4f5a");
        assert_eq!(p["from"], "+441111111111");
        assert_eq!(
            p["error"],
            "INVITE failed: sip status: 486: Busy here (SIP 486)"
        );
        assert_eq!(p["status"], "unknown");
        assert_eq!(p["outcome"], "failed");
    }

    #[test]
    fn another_post_call_type_is_ignored() {
        let n = normalize(&json!({
            "type": "voice_removal_notice",
            "event_timestamp": 1739537297,
            "data": {"voice_id": "v-1"}
        }));
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "voice_removal_notice");
        assert_eq!(n.identity, None);
        assert_eq!(n.payload["voiceId"], "v-1");
    }

    #[test]
    fn a_body_without_a_type_is_unknown() {
        let n = normalize(&json!({"hello": "world"}));
        assert_eq!(n.event_type, None);
        assert_eq!(n.provider_type, "unknown");
    }
}
