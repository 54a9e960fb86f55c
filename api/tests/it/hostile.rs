//! Hostile input is refused cleanly: oversized and chunked bodies, header injection, enormous or
//! deeply nested JSON, SQL in parameters, tokens for someone else. Never a 5xx, never a crash.
//!
//! Covered elsewhere: bad JWTs (`auth::bad_tokens_are_refused_with_401`), a declared oversized
//! body (`errors::oversized_body_is_413`, `inbound::a_body_over_1_mib_is_413`), CRLF and reserved
//! header names on create (`configs::every_invalid_create_is_refused_with_400_and_stores_nothing`),
//! paging limits (`events::invalid_query_values_are_400`), stale ElevenLabs signatures and
//! SignalWire signatures for another URL (`inbound`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wirehook_api::app::MAX_BODY_BYTES;
use wirehook_api::inbound::{elevenlabs, signalwire};

use crate::common::{
    ELEVENLABS_SECRET, JWT_SECRET, SIGNALWIRE_KEY, TestApp, error_code, example_config, jwt_config,
    read,
};

const SIGNALWIRE_PATH: &str = "/api/webhooks/signalwire";
const ELEVENLABS_PATH: &str = "/api/webhooks/elevenlabs";

/// How the body of a raw request is framed.
enum Framing {
    /// `Transfer-Encoding: chunked` in 64 KiB chunks, no `Content-Length`.
    Chunked,
    /// A `Content-Length` header with this value, whatever the body's real length.
    Declared(usize),
}

/// Sends one HTTP/1.1 request over a fresh connection, exactly as framed, and returns the
/// answer's status and JSON body (Null when not JSON). Blocking I/O, on a thread of its own.
async fn raw_request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    framing: Framing,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut wire = Vec::new();
    match framing {
        Framing::Chunked => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            wire.extend_from_slice(head.as_bytes());
            for chunk in body.chunks(64 * 1024) {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
        Framing::Declared(length) => {
            head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(&body);
        }
    }
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect to the api");
        // A server that waits for bytes that never come fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        // The server may answer and stop reading early; its answer is what matters.
        let _ = stream.write_all(&wire);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        parse_response(&answer)
    })
    .await
    .expect("raw request thread")
}

/// Status and JSON body of a raw HTTP/1.1 response (Content-Length or chunked).
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete HTTP response: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn bearer(app: &TestApp) -> String {
    format!("Bearer {}", app.token)
}

/// `depth` nested arrays: `[[[…]]]`.
fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Asserts the api still answers normally (no crash, no wedged runtime).
async fn assert_still_serving(app: &TestApp) {
    let (status, body) = app.get("/api/webhooks/config").await;
    assert_eq!(status, 200, "the api stopped serving: {body}");
}

async fn post_raw_json(app: &TestApp, path: &str, body: String) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    read(resp).await
}

async fn post_signed_signalwire(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let url = format!("{}{SIGNALWIRE_PATH}", app.public_base_url);
    let signature = signalwire::sign_json(SIGNALWIRE_KEY.as_bytes(), &url, body);
    let resp = app
        .client
        .post(app.url(SIGNALWIRE_PATH))
        .header("content-type", "application/json")
        .header("X-SignalWire-Signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("send");
    read(resp).await
}

async fn post_signed_elevenlabs(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let header = elevenlabs::sign(
        ELEVENLABS_SECRET.as_bytes(),
        chrono::Utc::now().timestamp(),
        body,
    );
    let resp = app
        .client
        .post(app.url(ELEVENLABS_PATH))
        .header("content-type", "application/json")
        .header("ElevenLabs-Signature", header)
        .body(body.to_vec())
        .send()
        .await
        .expect("send");
    read(resp).await
}

// ---- JWT ----

#[tokio::test]
async fn a_token_for_another_audience_is_401_in_the_error_shape() {
    let mut jwt = jwt_config();
    jwt.audience = Some("wirehook".into());
    let app = TestApp::spawn_with(jwt).await;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "x", "exp": chrono::Utc::now().timestamp() + 3600, "aud": "billing"}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()).expect("key"),
    )
    .expect("encode");
    let resp = app
        .client
        .get(app.url("/api/webhooks/config"))
        .bearer_auth(token)
        .send()
        .await
        .expect("send");
    let (status, body) = read(resp).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
}

// ---- oversized bodies ----

#[tokio::test]
async fn a_chunked_body_under_the_limit_is_read() {
    let app = TestApp::spawn().await;
    let token = bearer(&app);
    let body = example_config().to_string().into_bytes();
    let (status, answer) = raw_request(
        app.addr,
        "/api/webhooks/config",
        &[
            ("Authorization", &token),
            ("Content-Type", "application/json"),
        ],
        Framing::Chunked,
        body,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn a_chunked_api_body_over_1_mib_is_413() {
    let app = TestApp::spawn().await;
    let token = bearer(&app);
    let mut body = br#"{"name": ""#.to_vec();
    body.resize(MAX_BODY_BYTES + 1, b'x');
    let (status, answer) = raw_request(
        app.addr,
        "/api/webhooks/config",
        &[
            ("Authorization", &token),
            ("Content-Type", "application/json"),
        ],
        Framing::Chunked,
        body,
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(error_code(&answer), "payload_too_large");
    let (_, list) = app.get("/api/webhooks/config").await;
    assert_eq!(list["webhooks"], json!([]));
}

#[tokio::test]
async fn a_chunked_inbound_body_over_1_mib_is_413() {
    let app = TestApp::spawn().await;
    let (status, answer) = raw_request(
        app.addr,
        SIGNALWIRE_PATH,
        &[
            ("Content-Type", "application/json"),
            ("X-SignalWire-Signature", "00"),
        ],
        Framing::Chunked,
        vec![b' '; MAX_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(error_code(&answer), "payload_too_large");
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_sent() {
    // Only the head is sent: an api that waited for the gigabyte it announced would never answer.
    let app = TestApp::spawn().await;
    let token = bearer(&app);
    for (path, auth) in [
        ("/api/webhooks/config", token.as_str()),
        (ELEVENLABS_PATH, "none"),
    ] {
        let (status, answer) = raw_request(
            app.addr,
            path,
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            Framing::Declared(1 << 30),
            Vec::new(),
        )
        .await;
        assert_eq!(status, 413, "{path}: {answer}");
        assert_eq!(error_code(&answer), "payload_too_large", "{path}");
    }
}

// ---- configuration headers ----

#[tokio::test]
async fn an_update_with_crlf_in_a_header_value_is_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let path = format!("/api/webhooks/config/{}", created["id"]);
    for value in ["a\r\nX-Injected: yes", "a\nb", "a\rb", "a\0b"] {
        let (status, body) = app
            .put(&path, json!({"headers": {"X-Api-Key": value}}))
            .await;
        assert_eq!(status, 400, "{value:?}: {body}");
        assert_eq!(error_code(&body), "validation_failed", "{value:?}");
    }
    let (_, after) = app.get(&path).await;
    assert_eq!(after["webhook"]["headers"], created["headers"]);
}

#[tokio::test]
async fn an_update_with_a_reserved_header_name_is_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let path = format!("/api/webhooks/config/{}", created["id"]);
    for name in [
        "Webhook-Signature",
        "webhook-id",
        "WEBHOOK-TIMESTAMP",
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "X-A\r\nX-B",
        "",
    ] {
        let (status, body) = app.put(&path, json!({"headers": {name: "v"}})).await;
        assert_eq!(status, 400, "{name:?}: {body}");
        assert_eq!(error_code(&body), "validation_failed", "{name:?}");
    }
    let (_, after) = app.get(&path).await;
    assert_eq!(after["webhook"]["headers"], created["headers"]);
}

// ---- enormous or deeply nested JSON ----

#[tokio::test]
async fn deeply_nested_json_in_an_api_body_is_400() {
    let app = TestApp::spawn().await;
    let body = format!(
        r#"{{"name": "n", "url": "http://example.com/h", "eventTypes": ["call.completed"], "metadata": {{"deep": {}}}}}"#,
        nested_arrays(10_000)
    );
    let (status, answer) = post_raw_json(&app, "/api/webhooks/config", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_body");
    let (_, list) = app.get("/api/webhooks/config").await;
    assert_eq!(list["webhooks"], json!([]));
}

#[tokio::test]
async fn deeply_nested_json_in_a_published_event_is_400() {
    let app = TestApp::spawn().await;
    let body = format!(
        r#"{{"eventType": "contact.created", "payload": {{"deep": {}}}}}"#,
        nested_arrays(10_000)
    );
    let (status, answer) = post_raw_json(&app, "/api/webhooks/events", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_body");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn deeply_nested_json_in_a_signed_signalwire_webhook_is_400() {
    let app = TestApp::spawn().await;
    let body = format!(
        r#"{{"event_type": "call.completed", "call_id": "CA1", "deep": {}}}"#,
        nested_arrays(10_000)
    );
    let (status, answer) = post_signed_signalwire(&app, body.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_body");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn deeply_nested_json_in_a_signed_elevenlabs_webhook_is_400() {
    let app = TestApp::spawn().await;
    let body = format!(
        r#"{{"type": "post_call_transcription", "data": {}}}"#,
        nested_arrays(10_000)
    );
    let (status, answer) = post_signed_elevenlabs(&app, body.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_body");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn deeply_nested_json_in_an_unsigned_webhook_is_401_without_parsing() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url(SIGNALWIRE_PATH))
        .header("content-type", "application/json")
        .header("X-SignalWire-Signature", "00")
        .body(nested_arrays(100_000))
        .send()
        .await
        .expect("send");
    let (status, answer) = read(resp).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(error_code(&answer), "invalid_signature");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn huge_arrays_in_a_configuration_are_400() {
    let app = TestApp::spawn().await;
    let many = |n: usize| vec![json!("c"); n];
    let cases = [
        ("filters", json!({"filters": {"campaigns": many(200_000)}})),
        ("metadata", json!({"metadata": {"blob": vec![0; 400_000]}})),
        (
            "headers",
            json!({"headers": (0..40_000).map(|i| (format!("x-h{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
        ),
    ];
    for (what, overrides) in cases {
        let mut body = example_config();
        crate::common::merge(&mut body, overrides);
        let text = body.to_string();
        assert!(
            text.len() < MAX_BODY_BYTES,
            "{what}: keep it under the body limit"
        );
        let (status, answer) = post_raw_json(&app, "/api/webhooks/config", text).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(error_code(&answer), "validation_failed", "{what}");
    }
    let (_, list) = app.get("/api/webhooks/config").await;
    assert_eq!(list["webhooks"], json!([]));
}

#[tokio::test]
async fn a_huge_test_payload_is_400_and_nothing_is_sent() {
    let app = TestApp::spawn().await;
    let id = app.create_config(json!({"filters": null})).await["id"].clone();
    let body = json!({"eventType": "call.completed", "testPayload": {"blob": vec![0; 400_000]}});
    let (status, answer) = app
        .post(&format!("/api/webhooks/config/{id}/test"), body)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "validation_failed");
    let (_, events) = app.get("/api/webhooks/events").await;
    assert_eq!(events["total"], 0, "{events}");
}

// ---- query and path parameters ----

#[tokio::test]
async fn sql_fragments_in_parameters_are_refused_or_match_nothing() {
    let app = TestApp::spawn().await;
    app.create_config(json!({})).await;
    for _ in 0..3 {
        let (status, _) = app
            .post(
                "/api/webhooks/events",
                json!({"eventType": "contact.created", "payload": {}}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let fragments = [
        "' OR 1=1 --",
        "' OR '1'='1",
        "1; DROP TABLE webhook_events; --",
        "inbound' OR 'a'='a",
        "1 OR 1=1",
        "%' --",
    ];
    let params = [
        "eventType",
        "direction",
        "source",
        "status",
        "fromDate",
        "toDate",
        "webhookConfigId",
        "page",
        "limit",
    ];
    for param in params {
        for fragment in fragments {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(param, fragment)
                .finish();
            let (status, body) = app.get(&format!("/api/webhooks/events?{query}")).await;
            match status {
                400 => {
                    error_code(&body);
                }
                200 => assert_eq!(body["total"], 0, "{query} matched rows: {body}"),
                other => panic!("{query}: {other} {body}"),
            }
        }
    }
    for fragment in fragments {
        let encoded: String = url::form_urlencoded::byte_serialize(fragment.as_bytes()).collect();
        for path in [
            format!("/api/webhooks/config/{encoded}"),
            format!("/api/webhooks/events/{encoded}"),
        ] {
            let (status, body) = app.get(&path).await;
            assert!(status == 400 || status == 404, "{path}: {status} {body}");
        }
    }
    let (status, all) = app.get("/api/webhooks/events").await;
    assert_eq!(status, 200, "the table is still there: {all}");
    assert_eq!(all["total"], 3);
}

#[tokio::test]
async fn extreme_paging_values_are_refused_or_empty() {
    let app = TestApp::spawn().await;
    for query in [
        "page=-1",
        "page=1000001",
        "page=99999999999999999999999",
        "limit=1000000",
        "limit=-5",
        "limit=18446744073709551616",
        "page=1e3",
    ] {
        let (status, body) = app.get(&format!("/api/webhooks/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        error_code(&body);
    }
    let (status, body) = app.get("/api/webhooks/events?page=1000000&limit=100").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], json!([]));
}

#[tokio::test]
async fn json_nested_100_levels_deep_is_400() {
    // Under serde_json's own limit (128), but history answers would nest it deeper than that.
    let app = TestApp::spawn().await;
    let id = app.create_config(json!({"filters": null})).await["id"].clone();
    let deep = nested_arrays(100);
    let config = format!(
        r#"{{"name": "n", "url": "http://example.com/h", "eventTypes": ["call.completed"], "metadata": {{"deep": {deep}}}}}"#
    );
    let test = format!(r#"{{"eventType": "call.completed", "testPayload": {{"deep": {deep}}}}}"#);
    let publish = format!(r#"{{"eventType": "contact.created", "payload": {{"deep": {deep}}}}}"#);
    for (path, body) in [
        ("/api/webhooks/config".to_owned(), config),
        (format!("/api/webhooks/config/{id}/test"), test),
        ("/api/webhooks/events".to_owned(), publish),
    ] {
        let (status, answer) = post_raw_json(&app, &path, body).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(error_code(&answer), "validation_failed", "{path}");
    }
    let signed = format!(r#"{{"event_type": "call.completed", "call_id": "CA1", "deep": {deep}}}"#);
    let (status, answer) = post_signed_signalwire(&app, signed.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_body");
    let (_, events) = app.get("/api/webhooks/events?direction=outbound").await;
    assert_eq!(events["total"], 0, "{events}");
}

#[tokio::test]
async fn the_deepest_json_accepted_stays_readable_in_the_history() {
    // Whatever depth the api accepts, serde_json (limit 128) must be able to read the history.
    let app = TestApp::spawn().await;
    app.create_config(
        json!({"eventTypes": ["contact.created", "call.completed"], "filters": null}),
    )
    .await;
    let mut accepted = 0;
    for depth in (1..=130).rev() {
        let body = format!(
            r#"{{"eventType": "contact.created", "payload": {{"deep": {}}}}}"#,
            nested_arrays(depth)
        );
        let (status, answer) = post_raw_json(&app, "/api/webhooks/events", body).await;
        if status == 201 {
            accepted += 1;
            break;
        }
        assert_eq!(status, 400, "depth {depth}: {answer}");
    }
    for depth in (1..=130).rev() {
        let body = format!(
            r#"{{"event_type": "call.completed", "call_id": "CA{depth}", "metadata": {{"deep": {}}}}}"#,
            nested_arrays(depth)
        );
        let (status, answer) = post_signed_signalwire(&app, body.as_bytes()).await;
        if status == 200 {
            accepted += 1;
            break;
        }
        assert_eq!(status, 400, "depth {depth}: {answer}");
    }
    assert_eq!(accepted, 2, "nothing deep was accepted at all");
    let (status, list) = app.get("/api/webhooks/events?limit=100").await;
    assert_eq!(status, 200, "unreadable history list: {list}");
    assert!(list["total"].as_u64().is_some_and(|n| n >= 2), "{list}");
    for event in list["events"].as_array().expect("events") {
        let (status, details) = app
            .get(&format!("/api/webhooks/events/{}", event["id"]))
            .await;
        assert_eq!(status, 200, "unreadable event details: {details}");
    }
}

// ---- text PostgreSQL cannot store ----

#[tokio::test]
async fn nul_characters_in_stored_text_are_400_not_500() {
    let app = TestApp::spawn().await;
    let config = |overrides: Value| {
        let mut body = example_config();
        crate::common::merge(&mut body, overrides);
        body
    };
    let id = app.create_config(json!({"filters": null})).await["id"].clone();
    let cases = [
        (
            "config name",
            "/api/webhooks/config".to_owned(),
            config(json!({"name": "a\u{0}b"})),
        ),
        (
            "filter value",
            "/api/webhooks/config".to_owned(),
            config(json!({"filters": {"campaigns": ["c\u{0}"]}})),
        ),
        (
            "metadata key",
            "/api/webhooks/config".to_owned(),
            config(json!({"metadata": {"k\u{0}": 1}})),
        ),
        (
            "test payload",
            format!("/api/webhooks/config/{id}/test"),
            json!({"eventType": "call.completed", "testPayload": {"note": "\u{0}"}}),
        ),
        (
            "event payload",
            "/api/webhooks/events".to_owned(),
            json!({"eventType": "contact.created", "payload": {"\u{0}": "x"}}),
        ),
        (
            "idempotency key",
            "/api/webhooks/events".to_owned(),
            json!({"eventType": "contact.created", "payload": {}, "idempotencyKey": "k\u{0}"}),
        ),
    ];
    for (what, path, body) in cases {
        let (status, answer) = app.post(&path, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        error_code(&answer);
    }
    let (status, answer) = app
        .put(
            &format!("/api/webhooks/config/{id}"),
            json!({"name": "x\u{0}"}),
        )
        .await;
    assert_eq!(status, 400, "update: {answer}");
    let (status, answer) = app.get("/api/webhooks/events?eventType=a%00b").await;
    assert_eq!(status, 400, "query: {answer}");
    let (_, list) = app.get("/api/webhooks/config").await;
    assert_eq!(list["webhooks"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test]
async fn a_signed_webhook_with_a_nul_character_is_400_and_audited() {
    let app = TestApp::spawn().await;
    let body = br#"{"event_type": "call.completed", "call_id": "CA1", "note": "a\u0000b"}"#;
    let (status, answer) = post_signed_signalwire(&app, body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "invalid_body");
    let (_, rejected) = app
        .get("/api/webhooks/events?direction=inbound&status=rejected")
        .await;
    assert_eq!(rejected["total"], 1, "{rejected}");
}

#[tokio::test]
async fn an_unsigned_body_with_nul_bytes_is_refused_and_still_audited() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url(ELEVENLABS_PATH))
        .header("content-type", "application/json")
        .body(b"{\"a\": \"\0\0\0\"}".to_vec())
        .send()
        .await
        .expect("send");
    let (status, answer) = read(resp).await;
    assert_eq!(status, 401, "{answer}");
    let (_, rejected) = app
        .get("/api/webhooks/events?direction=inbound&status=rejected")
        .await;
    assert_eq!(
        rejected["total"], 1,
        "the refusal was not recorded: {rejected}"
    );
}

#[tokio::test]
async fn numbers_that_would_not_read_back_are_refused_and_the_history_stays_readable() {
    // PostgreSQL keeps 1.7976931348623157e308 as 309 digits that serde_json cannot read back:
    // stored, one such event made every history listing answer 500.
    let app = TestApp::spawn().await;
    let id = app.create_config(json!({"filters": null})).await["id"].clone();
    for huge in ["1.7976931348623157e308", "-1.7976931348623157e308", "1e308"] {
        let publish = format!(r#"{{"eventType": "contact.created", "payload": {{"n": {huge}}}}}"#);
        let (status, answer) = post_raw_json(&app, "/api/webhooks/events", publish).await;
        assert_eq!(status, 400, "publish {huge}: {answer}");
        let config = format!(
            r#"{{"name": "n", "url": "http://example.com/h", "eventTypes": ["call.completed"], "metadata": {{"n": {huge}}}}}"#
        );
        let (status, answer) = post_raw_json(&app, "/api/webhooks/config", config).await;
        assert_eq!(status, 400, "metadata {huge}: {answer}");
        let test = format!(r#"{{"eventType": "call.completed", "testPayload": {{"n": {huge}}}}}"#);
        let (status, answer) =
            post_raw_json(&app, &format!("/api/webhooks/config/{id}/test"), test).await;
        assert_eq!(status, 400, "test payload {huge}: {answer}");
        let signed =
            format!(r#"{{"event_type": "call.completed", "call_id": "CA1", "n": {huge}}}"#);
        let (status, answer) = post_signed_signalwire(&app, signed.as_bytes()).await;
        assert_eq!(status, 400, "inbound {huge}: {answer}");
    }
    let fine = r#"{"eventType": "contact.created", "payload": {"big": 1e307, "tiny": 5e-324, "long": 123456789012345678901234567890}}"#;
    let (status, answer) = post_raw_json(&app, "/api/webhooks/events", fine.to_owned()).await;
    assert_eq!(status, 201, "{answer}");
    let (status, list) = app.get("/api/webhooks/events?limit=100").await;
    assert_eq!(status, 200, "{list}");
    for event in list["events"].as_array().expect("events") {
        let (status, details) = app
            .get(&format!("/api/webhooks/events/{}", event["id"]))
            .await;
        assert_eq!(status, 200, "{details}");
    }
}
