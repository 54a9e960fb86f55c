//! poem's own rejections come out in the same JSON error shape as the API's.

use serde_json::json;

use crate::common::{TestApp, error_code, read};

#[tokio::test]
async fn malformed_json_is_400_invalid_body() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/api/webhooks/config"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("send");
    let (status, body) = read(resp).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_body");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/api/webhooks/config"))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .expect("send");
    let (status, body) = read(resp).await;
    assert_eq!(status, 415);
    assert_eq!(error_code(&body), "unsupported_media_type");
}

#[tokio::test]
async fn unknown_route_is_404_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/webhooks/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn wrong_method_is_405_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call(reqwest::Method::PATCH, "/api/webhooks/config", None)
        .await;
    assert_eq!(status, 405);
    assert_eq!(error_code(&body), "method_not_allowed");
}

#[tokio::test]
async fn a_405_lists_the_methods_the_path_allows() {
    let app = TestApp::spawn().await;
    for (method, path, allowed) in [
        (
            reqwest::Method::PATCH,
            "/api/webhooks/config",
            "GET, HEAD, POST",
        ),
        (
            reqwest::Method::POST,
            "/api/webhooks/config/7",
            "GET, HEAD, PUT, DELETE",
        ),
        (reqwest::Method::GET, "/api/webhooks/events/7/retry", "POST"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("send");
        let allow = resp.headers().get("allow").cloned();
        let (status, body) = read(resp).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(error_code(&body), "method_not_allowed");
        assert_eq!(
            allow.as_ref().and_then(|v| v.to_str().ok()),
            Some(allowed),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(wirehook_api::app::MAX_BODY_BYTES + 1);
    let (status, body) = app
        .post("/api/webhooks/config", json!({ "name": big }))
        .await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "payload_too_large");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("send");
    assert_eq!(read(resp).await, (200, json!({"status": "ok"})));
    let resp = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("send");
    assert_eq!(read(resp).await, (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = TestApp::spawn().await;
    app.get("/api/webhooks/config").await;
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    assert!(text.contains("wirehook_http_requests_total"), "{text}");
}

#[tokio::test]
async fn swagger_ui_is_served_at_docs() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/docs")).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("text").contains("swagger"));
}
