//! What a security review of the api checks on every route: response headers, no caching of
//! secrets, and outbound deliveries that carry none of the caller's credentials.

use serde_json::json;
use wirehook_testkit::receiver::{Keep, Receiver};

use crate::common::TestApp;

#[tokio::test]
async fn every_response_says_nosniff_and_names_no_server() {
    let app = TestApp::spawn().await;
    let anonymous = reqwest::Client::new();
    for path in [
        "/healthz",
        "/openapi.json",
        "/api/webhooks/config",
        "/no/such/route",
    ] {
        let response = anonymous.get(app.url(path)).send().await.expect("request");
        let headers = response.headers();
        assert_eq!(
            headers
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{path}: {headers:?}"
        );
        assert!(headers.get("server").is_none(), "{path}: {headers:?}");
    }
}

#[tokio::test]
async fn responses_that_carry_a_secret_are_not_stored_by_caches() {
    let app = TestApp::spawn().await;
    let created = app
        .client
        .post(app.url("/api/webhooks/config"))
        .bearer_auth(&app.token)
        .json(&json!({"name": "n", "url": "https://example.com/h",
                      "eventTypes": ["call.completed"]}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let id = created.json::<serde_json::Value>().await.expect("json")["webhook"]["id"]
        .as_i64()
        .expect("id");
    let rotated = app
        .client
        .post(app.url(&format!("/api/webhooks/config/{id}/rotate-secret")))
        .bearer_auth(&app.token)
        .json(&json!({}))
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_test_delivery_carries_none_of_the_callers_credentials() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    let id = app
        .create_config(json!({"url": receiver.url("/hook"), "filters": null, "headers": null}))
        .await["id"]
        .as_i64()
        .expect("id");
    let answer = app
        .client
        .post(app.url(&format!("/api/webhooks/config/{id}/test")))
        .bearer_auth(&app.token)
        .header("cookie", "session=caller-cookie")
        .header("x-api-key", "caller-api-key")
        .json(&json!({"eventType": "call.completed"}))
        .send()
        .await
        .expect("test delivery");
    assert_eq!(answer.status(), 200);
    let arrival = receiver.received().pop().expect("the delivery arrived");
    for name in [
        "authorization",
        "cookie",
        "x-api-key",
        "proxy-authorization",
    ] {
        assert!(
            !arrival.headers.contains_key(name),
            "{name}: {:?}",
            arrival.headers
        );
    }
    for value in arrival.headers.values() {
        assert!(!value.contains(&app.token), "{value}");
        assert!(!value.contains("caller-"), "{value}");
    }
}
