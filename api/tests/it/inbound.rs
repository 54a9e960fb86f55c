//! Provider webhooks over real HTTP: verification, audit, de-duplication, normalization and
//! fan-out through the real worker to real receivers.

use std::time::Duration;

use serde_json::{Value, json};
use wirehook_api::inbound::{CidrList, elevenlabs, signalwire};
use wirehook_testkit::receiver::Receiver;

use crate::common::{ELEVENLABS_SECRET, SIGNALWIRE_KEY, TestApp, error_code, read};

const SIGNALWIRE_PATH: &str = "/api/webhooks/signalwire";
const ELEVENLABS_PATH: &str = "/api/webhooks/elevenlabs";

/// The contract's SignalWire example, as a `call.completed` event.
pub(crate) fn signalwire_call(event_type: &str, call_id: &str, campaign: &str) -> Vec<u8> {
    json!({
        "event_type": event_type,
        "timestamp": "2023-07-29T15:00:00Z",
        "call_id": call_id,
        "direction": "outbound",
        "from": "+18005551234",
        "to": "+18005557890",
        "state": "completed",
        "duration": 42,
        "metadata": {"campaignId": campaign, "contactId": 42}
    })
    .to_string()
    .into_bytes()
}

/// The contract's ElevenLabs example.
fn elevenlabs_voice(event_type: &str) -> Vec<u8> {
    json!({
        "event_type": event_type,
        "timestamp": "2023-07-29T15:05:00Z",
        "voice_id": "voice-123",
        "agent_id": "agent-456",
        "call_id": "CA123456789abcdef",
        "duration": 15.5,
        "metadata": {"campaignId": "campaign-123", "contactId": 42}
    })
    .to_string()
    .into_bytes()
}

/// Posts a JSON body to SignalWire's endpoint signed as SignalWire signs it.
pub(crate) async fn post_signalwire(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let url = format!("{}{SIGNALWIRE_PATH}", app.public_base_url);
    let signature = signalwire::sign_json(SIGNALWIRE_KEY.as_bytes(), &url, body);
    send(
        app,
        SIGNALWIRE_PATH,
        "application/json",
        body,
        &[("X-SignalWire-Signature", &signature)],
    )
    .await
}

/// Posts a body to ElevenLabs' endpoint signed now.
async fn post_elevenlabs(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let header = elevenlabs::sign(
        ELEVENLABS_SECRET.as_bytes(),
        chrono::Utc::now().timestamp(),
        body,
    );
    send(
        app,
        ELEVENLABS_PATH,
        "application/json",
        body,
        &[("ElevenLabs-Signature", &header)],
    )
    .await
}

async fn send(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body.to_vec());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    read(req.send().await.expect("request")).await
}

/// Inbound events of `status`, newest first, through the history API.
pub(crate) async fn inbound_events(app: &TestApp, status: &str) -> Vec<Value> {
    let (code, body) = app
        .get(&format!(
            "/api/webhooks/events?direction=inbound&status={status}"
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    body["events"].as_array().expect("events").clone()
}

/// Outbound events created from inbound event `parent`.
async fn deliveries_of(app: &TestApp, parent: i64) -> Vec<Value> {
    let (_, body) = app
        .get("/api/webhooks/events?direction=outbound&limit=100")
        .await;
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["parentEventId"] == parent)
        .cloned()
        .collect()
}

async fn config_for(app: &TestApp, receiver: &Receiver, overrides: Value) -> i64 {
    let mut body = json!({
        "url": receiver.url("/hooks"),
        "eventTypes": ["call.completed"],
        "filters": null,
        "headers": null,
    });
    crate::common::merge(&mut body, overrides);
    app.create_config(body).await["id"].as_i64().expect("id")
}

/// Asserts a 401 with `invalid_signature` and one `rejected` audit row.
async fn assert_rejected_401(app: &TestApp, (status, body): (u16, Value)) -> Value {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(error_code(&body), "invalid_signature");
    let rejected = inbound_events(app, "rejected").await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    rejected[0].clone()
}

// ---- SignalWire ----

#[tokio::test]
async fn a_signed_signalwire_event_is_delivered_to_matching_configs_only() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let matching = Receiver::ok().await.expect("receiver");
    let filtered_in = Receiver::ok().await.expect("receiver");
    let others = Receiver::ok().await.expect("receiver");
    let matching_id = config_for(&app, &matching, json!({})).await;
    let filtered_id = config_for(
        &app,
        &filtered_in,
        json!({"filters": {"campaigns": ["campaign-123"]}}),
    )
    .await;
    // Filtered out, not subscribed, inactive: none of them receives anything.
    config_for(
        &app,
        &others,
        json!({"filters": {"campaigns": ["campaign-999"]}}),
    )
    .await;
    config_for(&app, &others, json!({"eventTypes": ["call.created"]})).await;
    config_for(&app, &others, json!({"status": "inactive"})).await;

    let (status, body) = post_signalwire(
        &app,
        &signalwire_call("call.completed", "CA1", "campaign-123"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Webhook received and processed");
    assert_eq!(body["status"], "processed");
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["deliveries"], 2);

    for receiver in [&matching, &filtered_in] {
        let got = receiver.wait_for(1, Duration::from_secs(15)).await;
        assert_eq!(got.len(), 1);
        let envelope: Value = serde_json::from_slice(&got[0].body).expect("JSON body");
        assert_eq!(envelope["type"], "call.completed");
        assert_eq!(envelope["data"]["callId"], "CA1");
        assert_eq!(envelope["data"]["campaignId"], "campaign-123");
        assert!(got[0].headers.contains_key("webhook-signature"));
    }
    let parent = body["eventId"].as_i64().expect("eventId");
    let mut configs: Vec<i64> = deliveries_of(&app, parent)
        .await
        .iter()
        .map(|e| e["webhookConfigId"].as_i64().expect("config id"))
        .collect();
    configs.sort();
    assert_eq!(configs, [matching_id, filtered_id]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(others.received().is_empty(), "{:?}", others.received());
}

#[tokio::test]
async fn an_inbound_event_payload_is_the_provider_body_beside_its_normalized_form() {
    let app = TestApp::spawn().await;
    let body = signalwire_call("call.completed", "CA7", "campaign-1");
    let (status, answer) = post_signalwire(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["eventId"].as_i64().expect("eventId");
    let (_, details) = app.get(&format!("/api/webhooks/events/{id}")).await;
    let event = &details["event"];
    assert_eq!(event["direction"], "inbound");
    assert_eq!(event["source"], "signalwire");
    assert_eq!(event["eventType"], "call.completed");
    assert_eq!(event["status"], "processed");
    let raw: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(event["payload"], raw);
    assert_eq!(event["normalizedPayload"]["callId"], "CA7");
    assert_eq!(event["normalizedPayload"]["contactId"], 42);
    assert!(event.get("providerPayload").is_none(), "{event}");
    assert_eq!(event["clientIp"], "127.0.0.1");
}

#[tokio::test]
async fn a_signed_cxml_status_callback_is_processed() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    config_for(&app, &receiver, json!({})).await;
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("CallStatus", "completed"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Direction", "outbound-api"),
        ("CallDuration", "31"),
    ];
    let url = format!("{}{SIGNALWIRE_PATH}?campaign=7", app.public_base_url);
    let signature = signalwire::sign_form(SIGNALWIRE_KEY.as_bytes(), &url, &params);
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let (status, body) = send(
        &app,
        &format!("{SIGNALWIRE_PATH}?campaign=7"),
        "application/x-www-form-urlencoded",
        form.as_bytes(),
        &[("X-Twilio-Signature", &signature)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "processed");
    assert_eq!(body["deliveries"], 1);
    let id = body["eventId"].as_i64().expect("eventId");
    let (_, details) = app.get(&format!("/api/webhooks/events/{id}")).await;
    assert_eq!(details["event"]["eventType"], "call.completed");
    assert_eq!(details["event"]["payload"]["CallStatus"], "completed");
    assert_eq!(details["event"]["payload"]["CallSid"], "CA1234567890ABCDE");
    assert_eq!(
        details["event"]["normalizedPayload"]["callId"],
        "CA1234567890ABCDE"
    );
}

#[tokio::test]
async fn a_wrong_signalwire_signature_is_401_and_audited() {
    let app = TestApp::spawn().await;
    let body = signalwire_call("call.completed", "CA1", "c");
    let wrong = signalwire::sign_json(b"another-key", "http://x/", &body);
    let answer = send(
        &app,
        SIGNALWIRE_PATH,
        "application/json",
        &body,
        &[("X-SignalWire-Signature", &wrong)],
    )
    .await;
    let audit = assert_rejected_401(&app, answer).await;
    assert_eq!(audit["source"], "signalwire");
    assert_eq!(
        audit["lastError"],
        "the signature does not match the request"
    );
    assert_eq!(
        audit["payload"]["body"],
        String::from_utf8(body).expect("utf8")
    );
}

#[tokio::test]
async fn a_missing_signalwire_signature_is_401() {
    let app = TestApp::spawn().await;
    let body = signalwire_call("call.completed", "CA1", "c");
    let answer = send(&app, SIGNALWIRE_PATH, "application/json", &body, &[]).await;
    let audit = assert_rejected_401(&app, answer).await;
    assert_eq!(audit["lastError"], "the request has no signature header");
}

/// The signature headers are documented as parameters but still read by the handler: a value
/// that is not text is a missing signature, refused and audited, not a 400 before the handler.
#[tokio::test]
async fn a_signature_header_that_is_not_text_is_401_and_audited() {
    let app = TestApp::spawn().await;
    let not_text = reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes");
    let resp = app
        .client
        .post(app.url(SIGNALWIRE_PATH))
        .header("content-type", "application/json")
        .header("X-SignalWire-Signature", not_text)
        .body(signalwire_call("call.completed", "CA1", "c"))
        .send()
        .await
        .expect("request");
    let audit = assert_rejected_401(&app, read(resp).await).await;
    assert_eq!(audit["lastError"], "the request has no signature header");
}

#[tokio::test]
async fn a_tampered_signalwire_body_is_401() {
    let app = TestApp::spawn().await;
    let body = signalwire_call("call.completed", "CA1", "campaign-1");
    let url = format!("{}{SIGNALWIRE_PATH}", app.public_base_url);
    let signature = signalwire::sign_json(SIGNALWIRE_KEY.as_bytes(), &url, &body);
    let tampered = signalwire_call("call.completed", "CA1", "campaign-2");
    let answer = send(
        &app,
        SIGNALWIRE_PATH,
        "application/json",
        &tampered,
        &[("X-SignalWire-Signature", &signature)],
    )
    .await;
    assert_rejected_401(&app, answer).await;
}

#[tokio::test]
async fn a_signature_for_another_public_url_is_401() {
    // Behind a proxy, PUBLIC_BASE_URL is what SignalWire calls and what it signs.
    let app = TestApp::spawn_inbound(|c| {
        c.public_base_url = url::Url::parse("https://hooks.example.com").expect("url");
    })
    .await;
    let body = signalwire_call("call.completed", "CA1", "c");
    let local = format!("{}{SIGNALWIRE_PATH}", app.url(""));
    let signature = signalwire::sign_json(SIGNALWIRE_KEY.as_bytes(), &local, &body);
    let answer = send(
        &app,
        SIGNALWIRE_PATH,
        "application/json",
        &body,
        &[("X-SignalWire-Signature", &signature)],
    )
    .await;
    assert_rejected_401(&app, answer).await;
    // Signed for the public URL, the same request passes.
    let (status, body) = post_signalwire(&app, &body).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_rejected_request_keeps_at_most_4_kib_of_its_body() {
    let app = TestApp::spawn().await;
    let body = format!("{{\"junk\":\"{}\"}}", "x".repeat(10_000)).into_bytes();
    let answer = send(&app, SIGNALWIRE_PATH, "application/json", &body, &[]).await;
    let audit = assert_rejected_401(&app, answer).await;
    let kept = &audit["payload"];
    assert!(audit.get("normalizedPayload").is_none(), "{audit}");
    assert_eq!(kept["bytes"], body.len());
    assert_eq!(kept["truncated"], true);
    assert_eq!(kept["body"].as_str().expect("body").len(), 4096);
}

#[tokio::test]
async fn a_valid_signature_over_invalid_json_is_400() {
    let app = TestApp::spawn().await;
    let (status, body) = post_signalwire(&app, b"{\"event_type\": ").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_body");
    assert_eq!(inbound_events(&app, "rejected").await.len(), 1);
}

#[tokio::test]
async fn an_unknown_event_type_is_200_and_ignored() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    config_for(&app, &receiver, json!({})).await;
    let (status, body) =
        post_signalwire(&app, &signalwire_call("call.teleported", "CA1", "c")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ignored");
    assert_eq!(body["deliveries"], 0);
    let ignored = inbound_events(&app, "ignored").await;
    assert_eq!(ignored.len(), 1);
    assert_eq!(ignored[0]["eventType"], "call.teleported");
}

#[tokio::test]
async fn a_provider_retry_is_a_duplicate_and_fans_out_nothing() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    config_for(&app, &receiver, json!({})).await;
    let body = signalwire_call("call.completed", "CA1", "c");
    let (_, first) = post_signalwire(&app, &body).await;
    let (status, second) = post_signalwire(&app, &body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["deliveries"], 0);
    assert_eq!(second["eventId"], first["eventId"]);
    assert_eq!(inbound_events(&app, "processed").await.len(), 1);
}

#[tokio::test]
async fn the_same_event_posted_concurrently_fans_out_exactly_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    config_for(&app, &receiver, json!({})).await;
    let body = signalwire_call("call.completed", "CA-race", "c");
    let answers = futures::future::join_all((0..8).map(|_| post_signalwire(&app, &body))).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let fresh = answers
        .iter()
        .filter(|(_, b)| b["duplicate"] == false)
        .count();
    assert_eq!(fresh, 1, "{answers:?}");
    let parent = answers[0].1["eventId"].as_i64().expect("eventId");
    assert!(answers.iter().all(|(_, b)| b["eventId"] == parent));
    assert_eq!(deliveries_of(&app, parent).await.len(), 1);
}

#[tokio::test]
async fn a_body_over_1_mib_is_413() {
    let app = TestApp::spawn().await;
    let body = vec![b' '; 1024 * 1024 + 1];
    let (status, answer) = send(&app, SIGNALWIRE_PATH, "application/json", &body, &[]).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(error_code(&answer), "payload_too_large");
}

#[tokio::test]
async fn an_unconfigured_provider_key_is_503() {
    let app = TestApp::spawn_inbound(|c| c.signalwire_signing_key = None).await;
    let body = signalwire_call("call.completed", "CA1", "c");
    let (status, answer) = send(&app, SIGNALWIRE_PATH, "application/json", &body, &[]).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(error_code(&answer), "service_unavailable");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("SIGNALWIRE_SIGNING_KEY"),
        "{answer}"
    );
}

// ---- ElevenLabs ----

#[tokio::test]
async fn a_signed_elevenlabs_event_is_delivered() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::ok().await.expect("receiver");
    config_for(
        &app,
        &receiver,
        json!({"eventTypes": ["voice.completed"], "filters": {"agents": ["agent-456"]}}),
    )
    .await;
    let (status, body) = post_elevenlabs(&app, &elevenlabs_voice("voice.completed")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deliveries"], 1);
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1);
    let envelope: Value = serde_json::from_slice(&got[0].body).expect("JSON body");
    assert_eq!(envelope["type"], "voice.completed");
    assert_eq!(envelope["data"]["agentId"], "agent-456");
    assert_eq!(envelope["data"]["voiceId"], "voice-123");
}

#[tokio::test]
async fn a_real_post_call_transcription_webhook_is_processed() {
    let app = TestApp::spawn().await;
    let body = json!({
        "type": "post_call_transcription",
        "event_timestamp": 1739537297,
        "data": {
            "agent_id": "agent-1",
            "conversation_id": "conv-1",
            "status": "done",
            "transcript": [{"role": "agent", "message": "Hello", "time_in_call_secs": 0}],
            "metadata": {"start_time_unix_secs": 1739537297, "call_duration_secs": 22},
            "analysis": {"call_successful": "success"}
        }
    })
    .to_string()
    .into_bytes();
    let (status, answer) = post_elevenlabs(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "processed");
    let id = answer["eventId"].as_i64().expect("eventId");
    let (_, details) = app.get(&format!("/api/webhooks/events/{id}")).await;
    assert_eq!(
        details["event"]["payload"]["data"]["conversation_id"],
        "conv-1"
    );
    let normalized = &details["event"]["normalizedPayload"];
    assert_eq!(normalized["conversationId"], "conv-1");
    assert_eq!(normalized["agentId"], "agent-1");
}

#[tokio::test]
async fn a_stale_elevenlabs_timestamp_is_401() {
    let app = TestApp::spawn().await;
    let body = elevenlabs_voice("voice.completed");
    let an_hour_ago = chrono::Utc::now().timestamp() - 3600;
    let header = elevenlabs::sign(ELEVENLABS_SECRET.as_bytes(), an_hour_ago, &body);
    let answer = send(
        &app,
        ELEVENLABS_PATH,
        "application/json",
        &body,
        &[("ElevenLabs-Signature", &header)],
    )
    .await;
    let audit = assert_rejected_401(&app, answer).await;
    assert_eq!(audit["source"], "elevenlabs");
    assert_eq!(audit["lastError"], "the signature timestamp is too old");
}

#[tokio::test]
async fn a_wrong_elevenlabs_secret_is_401() {
    let app = TestApp::spawn().await;
    let body = elevenlabs_voice("voice.completed");
    let header = elevenlabs::sign(b"not-the-secret", chrono::Utc::now().timestamp(), &body);
    let answer = send(
        &app,
        ELEVENLABS_PATH,
        "application/json",
        &body,
        &[("ElevenLabs-Signature", &header)],
    )
    .await;
    assert_rejected_401(&app, answer).await;
}

// ---- production allow lists ----

fn cidrs(list: &str) -> CidrList {
    list.parse().expect("CIDR list")
}

#[tokio::test]
async fn production_refuses_a_source_ip_not_on_the_list() {
    let app = TestApp::spawn_inbound(|c| {
        c.enforce_allow_lists = true;
        c.elevenlabs_allowed_ips = cidrs("203.0.113.0/24");
    })
    .await;
    let (status, body) = post_elevenlabs(&app, &elevenlabs_voice("voice.completed")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    let rejected = inbound_events(&app, "rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["clientIp"], "127.0.0.1");
}

#[tokio::test]
async fn production_accepts_a_listed_ip_forwarded_by_a_trusted_proxy() {
    let app = TestApp::spawn_inbound(|c| {
        c.enforce_allow_lists = true;
        c.signalwire_allowed_ips = cidrs("203.0.113.0/24");
        c.trusted_proxies = cidrs("127.0.0.1/32");
    })
    .await;
    let body = signalwire_call("call.completed", "CA1", "c");
    let url = format!("{}{SIGNALWIRE_PATH}", app.public_base_url);
    let signature = signalwire::sign_json(SIGNALWIRE_KEY.as_bytes(), &url, &body);
    let (status, answer) = send(
        &app,
        SIGNALWIRE_PATH,
        "application/json",
        &body,
        &[
            ("X-SignalWire-Signature", &signature),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["eventId"].as_i64().expect("eventId");
    let (_, details) = app.get(&format!("/api/webhooks/events/{id}")).await;
    assert_eq!(details["event"]["clientIp"], "203.0.113.9");
}

#[tokio::test]
async fn production_ignores_x_forwarded_for_from_an_untrusted_peer() {
    let app = TestApp::spawn_inbound(|c| {
        c.enforce_allow_lists = true;
        c.signalwire_allowed_ips = cidrs("203.0.113.0/24");
    })
    .await;
    let body = signalwire_call("call.completed", "CA1", "c");
    let url = format!("{}{SIGNALWIRE_PATH}", app.public_base_url);
    let signature = signalwire::sign_json(SIGNALWIRE_KEY.as_bytes(), &url, &body);
    let (status, answer) = send(
        &app,
        SIGNALWIRE_PATH,
        "application/json",
        &body,
        &[
            ("X-SignalWire-Signature", &signature),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{answer}");
}

#[tokio::test]
async fn development_does_not_check_source_ips() {
    let app = TestApp::spawn_inbound(|c| c.signalwire_allowed_ips = cidrs("203.0.113.0/24")).await;
    let (status, body) =
        post_signalwire(&app, &signalwire_call("call.completed", "CA1", "c")).await;
    assert_eq!(status, 200, "{body}");
}

// ---- platform events ----

#[tokio::test]
async fn a_platform_event_is_recorded_and_delivered() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::ok().await.expect("receiver");
    config_for(
        &app,
        &receiver,
        json!({"eventTypes": ["conversation.completed"]}),
    )
    .await;
    let (status, body) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "conversation.completed", "payload": {"conversationId": "c-1"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["deliveries"], 1);
    assert_eq!(body["event"]["source"], "11wire");
    assert_eq!(body["event"]["status"], "processed");
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1);
    let envelope: Value = serde_json::from_slice(&got[0].body).expect("JSON body");
    assert_eq!(envelope["data"], json!({"conversationId": "c-1"}));
}

#[tokio::test]
async fn a_repeated_idempotency_key_publishes_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    config_for(&app, &receiver, json!({"eventTypes": ["contact.created"]})).await;
    let event = json!({
        "eventType": "contact.created",
        "payload": {"contactId": 42},
        "idempotencyKey": "contact-42-created"
    });
    let (first_status, first) = app.post("/api/webhooks/events", event.clone()).await;
    let (second_status, second) = app.post("/api/webhooks/events", event).await;
    assert_eq!(first_status, 201, "{first}");
    assert_eq!(second_status, 200, "{second}");
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["deliveries"], 0);
    assert_eq!(second["event"]["id"], first["event"]["id"]);
    let parent = first["event"]["id"].as_i64().expect("id");
    assert_eq!(deliveries_of(&app, parent).await.len(), 1);
}

#[tokio::test]
async fn publishing_an_event_type_outside_the_catalog_is_400() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "call.teleported", "payload": {}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn publishing_a_payload_that_is_not_an_object_is_400() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "contact.created", "payload": [1, 2]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn publishing_a_blank_idempotency_key_is_400() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "contact.created", "payload": {}, "idempotencyKey": "  "}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
}

#[tokio::test]
async fn publishing_refuses_an_unknown_field_and_publishes_nothing() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "contact.created", "payload": {}, "idempotencyKye": "k-1"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let (_, history) = app.get("/api/webhooks/events").await;
    assert_eq!(history["total"], 0, "{history}");
}

#[tokio::test]
async fn publishing_needs_a_token() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/api/webhooks/events"))
        .json(&json!({"eventType": "contact.created", "payload": {}}))
        .send()
        .await
        .expect("request");
    let (status, body) = read(resp).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
}
