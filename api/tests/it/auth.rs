//! Every config and events route needs a valid HS256 bearer JWT.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::{JWT_SECRET, TestApp, error_code, jwt_config, read};

const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/api/webhooks/config"),
    ("POST", "/api/webhooks/config"),
    ("GET", "/api/webhooks/config/1"),
    ("PUT", "/api/webhooks/config/1"),
    ("DELETE", "/api/webhooks/config/1"),
    ("GET", "/api/webhooks/events"),
    ("GET", "/api/webhooks/events/1"),
];

async fn status_with(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app
        .client
        .request(method, app.url(path))
        .json(&json!({"name": "x"}));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    read(req.send().await.expect("send")).await
}

fn sign(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("encode")
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

#[tokio::test]
async fn every_protected_route_refuses_a_missing_token() {
    let app = TestApp::spawn().await;
    for (method, path) in PROTECTED {
        let (status, body) = status_with(&app, method, path, None).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(error_code(&body), "unauthorized");
    }
}

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let app = TestApp::spawn().await;
    let (status, _) = status_with(&app, "GET", "/api/webhooks/config", Some(&app.token)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let app = TestApp::spawn().await;
    let alg_none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(json!({"sub": "x", "exp": in_an_hour()}).to_string())
        )
    };
    let cases = [
        ("alg none", alg_none),
        (
            "wrong key",
            sign(
                json!({"sub": "x", "exp": in_an_hour()}),
                "another-secret-entirely",
                Algorithm::HS256,
            ),
        ),
        (
            "expired",
            sign(
                json!({"sub": "x", "exp": chrono::Utc::now().timestamp() - 3600}),
                JWT_SECRET,
                Algorithm::HS256,
            ),
        ),
        (
            "missing exp",
            sign(json!({"sub": "x"}), JWT_SECRET, Algorithm::HS256),
        ),
        (
            "HS512 instead of HS256",
            sign(
                json!({"sub": "x", "exp": in_an_hour()}),
                JWT_SECRET,
                Algorithm::HS512,
            ),
        ),
        ("malformed", "not.a.jwt".to_owned()),
        ("empty", String::new()),
    ];
    for (why, token) in cases {
        let (status, body) = status_with(&app, "GET", "/api/webhooks/config", Some(&token)).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{why}");
    }
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let mut jwt = jwt_config();
    jwt.audience = Some("wirehook".into());
    jwt.issuer = Some("11wire-auth".into());
    let app = TestApp::spawn_with(jwt).await;
    let good = sign(
        json!({"sub": "x", "exp": in_an_hour(), "aud": "wirehook", "iss": "11wire-auth"}),
        JWT_SECRET,
        Algorithm::HS256,
    );
    let other_aud = sign(
        json!({"sub": "x", "exp": in_an_hour(), "aud": "billing", "iss": "11wire-auth"}),
        JWT_SECRET,
        Algorithm::HS256,
    );
    let no_iss = sign(
        json!({"sub": "x", "exp": in_an_hour(), "aud": "wirehook"}),
        JWT_SECRET,
        Algorithm::HS256,
    );
    assert_eq!(
        status_with(&app, "GET", "/api/webhooks/config", Some(&good))
            .await
            .0,
        200
    );
    assert_eq!(
        status_with(&app, "GET", "/api/webhooks/config", Some(&other_aud))
            .await
            .0,
        401
    );
    assert_eq!(
        status_with(&app, "GET", "/api/webhooks/config", Some(&no_iss))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn issued_tokens_carry_the_configured_claims() {
    let mut jwt = jwt_config();
    jwt.audience = Some("wirehook".into());
    let app = TestApp::spawn_with(jwt.clone()).await;
    let token =
        wirehook_api::auth::issue_token(&jwt, "ops", Duration::from_secs(60)).expect("token");
    assert_eq!(
        status_with(&app, "GET", "/api/webhooks/events", Some(&token))
            .await
            .0,
        200
    );
}
