//! Without `WIREHOOK_ENV` the real `api` binary runs in production mode: it refuses to start
//! without an encryption key, says which mode it runs in, refuses deliveries to private
//! addresses and provider requests from addresses not on the allow list.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use wirehook_api::config::JwtConfig;
use wirehook_api::inbound::elevenlabs;
use wirehook_testkit::receiver::Receiver;

use crate::common::{POOL, fresh_database};
use crate::secrets::{ELEVENLABS, JWT, RunningApi, api_binary};

const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

#[test]
fn without_wirehook_env_the_api_refuses_to_start_without_an_encryption_key() {
    let out = api_binary()
        .env_remove("WIREHOOK_ENV")
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("JWT_SECRET", JWT)
        .output()
        .expect("run the api binary");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("api: WIREHOOK_ENCRYPTION_KEY is invalid: required in production"),
        "{stderr}"
    );
}

async fn call(api: &RunningApi, path: &str, body: Value) -> (u16, Value) {
    let jwt = JwtConfig {
        secret: SecretString::from(JWT),
        issuer: None,
        audience: None,
    };
    let token =
        wirehook_api::auth::issue_token(&jwt, "tests", Duration::from_secs(600)).expect("token");
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", api.addr))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_wirehook_env_the_api_guards_deliveries_and_provider_requests() {
    let database = fresh_database().await;
    database.connect_migrated(POOL).await.expect("migrate");
    let receiver = Receiver::ok().await.expect("receiver");
    let api = RunningApi::start_with(database.url(), |cmd| {
        cmd.env_remove("WIREHOOK_ENV")
            .env("WIREHOOK_ENCRYPTION_KEY", KEY);
    })
    .await;

    let (status, created) = call(
        &api,
        "/api/webhooks/config",
        json!({"name": "local", "url": receiver.url("/hook"), "eventTypes": ["call.completed"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["webhook"]["id"].as_i64().expect("id");
    let (status, tested) = call(
        &api,
        &format!("/api/webhooks/config/{id}/test"),
        json!({"eventType": "call.completed"}),
    )
    .await;
    assert_eq!(status, 200, "{tested}");
    assert!(
        tested["details"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("ssrf_blocked")),
        "{tested}"
    );
    assert_eq!(receiver.summary().requests, 0);

    // A correctly signed ElevenLabs request from 127.0.0.1: not on ElevenLabs' egress list.
    let body = br#"{"type":"post_call_transcription","data":{"conversation_id":"c1"}}"#;
    let signature = elevenlabs::sign(ELEVENLABS.as_bytes(), chrono::Utc::now().timestamp(), body);
    let refused = reqwest::Client::new()
        .post(format!("http://{}/api/webhooks/elevenlabs", api.addr))
        .header("content-type", "application/json")
        .header("ElevenLabs-Signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 403);

    let output = api.stop();
    assert!(output.contains("production mode"), "{output}");
    assert!(!output.contains("development mode"), "{output}");
    assert!(!output.contains("ALLOW_PRIVATE_TARGETS=true"), "{output}");
}

#[tokio::test]
async fn development_mode_says_what_it_loosens_at_warn_level() {
    let database = fresh_database().await;
    database.connect_migrated(POOL).await.expect("migrate");
    let api = RunningApi::start_with(database.url(), |_| {}).await;
    let output = api.stop();
    let warnings: Vec<&str> = output.lines().filter(|l| l.contains("WARN")).collect();
    for expected in [
        "development mode",
        "ALLOW_PRIVATE_TARGETS=true",
        "development key",
    ] {
        assert!(
            warnings.iter().any(|l| l.contains(expected)),
            "no warning about {expected}: {output}"
        );
    }
}
