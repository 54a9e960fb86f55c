//! `POST /api/webhooks/config/{id}/test`: one synchronous, signed, recorded delivery.

use serde_json::json;
use standardwebhooks::Webhook;
use wirehook_testkit::receiver::{Receiver, Reply};

use crate::common::{TestApp, error_code};

async fn config_for(app: &TestApp, receiver: &Receiver) -> i64 {
    app.create_config(json!({"url": receiver.url("/hooks"), "filters": null}))
        .await["id"]
        .as_i64()
        .expect("id")
}

#[tokio::test]
async fn test_delivery_reaches_the_receiver_signed_for_standard_webhooks() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config_for(&app, &receiver).await;
    let body = json!({"eventType": "call.completed", "testPayload": {"callId": "test-call-123", "duration": 120, "outcome": "appointment_set"}});
    let (status, resp) = app
        .post(&format!("/api/webhooks/config/{id}/test"), body)
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["success"], json!(true));
    assert_eq!(resp["message"], "Test webhook sent successfully");
    assert_eq!(resp["details"]["statusCode"], 200);
    assert_eq!(resp["details"]["responseBody"], "Received");
    assert!(resp["details"]["responseTime"].as_u64().is_some());

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(
        req.headers["webhook-id"],
        resp["details"]["messageId"].as_str().expect("messageId")
    );
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["x-api-key"], "marketing-api-key-456");
    assert!(req.headers["user-agent"].starts_with("wirehook"));
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, req.headers[name].parse().expect("header"));
    }
    // The contract's example secret, verified by an independent Standard Webhooks implementation.
    Webhook::new("webhooksecret123")
        .expect("secret")
        .verify(&req.body, &headers)
        .expect("signature verifies");
    let envelope: serde_json::Value = serde_json::from_slice(&req.body).expect("json body");
    assert_eq!(envelope["type"], "call.completed");
    assert_eq!(
        envelope["data"],
        json!({"callId": "test-call-123", "duration": 120, "outcome": "appointment_set"})
    );
    assert!(envelope["timestamp"].as_str().is_some());
}

#[tokio::test]
async fn test_delivery_is_recorded_with_its_attempt() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config_for(&app, &receiver).await;
    let (_, resp) = app
        .post(
            &format!("/api/webhooks/config/{id}/test"),
            json!({"eventType": "call.completed"}),
        )
        .await;
    let event_id = resp["details"]["eventId"].as_i64().expect("eventId");
    let (status, details) = app.get(&format!("/api/webhooks/events/{event_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(details["event"]["status"], "delivered");
    assert_eq!(details["event"]["direction"], "outbound");
    assert_eq!(details["event"]["attempts"], 1);
    assert_eq!(details["event"]["webhookConfigId"], id);
    assert_eq!(details["event"]["responseData"]["statusCode"], 200);
    assert_eq!(details["event"]["responseData"]["body"], "Received");
    assert_eq!(details["deliveryAttempts"][0]["statusCode"], 200);
    assert_eq!(
        details["deliveryAttempts"][0]["requestHeaders"]["webhook-signature"],
        "[redacted]"
    );
}

#[tokio::test]
async fn a_failing_receiver_is_described_not_an_error() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200))
        .await
        .expect("receiver");
    let id = config_for(&app, &receiver).await;
    let (status, resp) = app
        .post(
            &format!("/api/webhooks/config/{id}/test"),
            json!({"eventType": "call.completed"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["details"]["delivered"], false);
    assert_eq!(resp["details"]["statusCode"], 500);
    let (_, details) = app
        .get(&format!(
            "/api/webhooks/events/{}",
            resp["details"]["eventId"]
        ))
        .await;
    assert_eq!(details["event"]["status"], "failed");
    assert_eq!(
        receiver.received().len(),
        1,
        "a test delivery is never retried"
    );
}

#[tokio::test]
async fn an_unreachable_receiver_is_described_not_an_error() {
    let app = TestApp::spawn().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let id = app
        .create_config(json!({"url": format!("http://127.0.0.1:{port}/gone")}))
        .await["id"]
        .as_i64()
        .expect("id");
    let (status, resp) = app
        .post(
            &format!("/api/webhooks/config/{id}/test"),
            json!({"eventType": "call.completed"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["details"]["delivered"], false);
    assert!(resp["details"].get("statusCode").is_none());
    assert!(
        resp["details"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("connect")),
        "{resp}"
    );
}

#[tokio::test]
async fn test_event_type_must_be_subscribed() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config_for(&app, &receiver).await;
    let (status, resp) = app
        .post(
            &format!("/api/webhooks/config/{id}/test"),
            json!({"eventType": "agent.ready"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&resp), "validation_failed");
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn test_of_an_unknown_configuration_is_404() {
    let app = TestApp::spawn().await;
    let (status, resp) = app
        .post(
            "/api/webhooks/config/777/test",
            json!({"eventType": "call.completed"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&resp), "not_found");
}

#[tokio::test]
async fn test_body_must_name_a_catalog_event_type() {
    let app = TestApp::spawn().await;
    let (status, resp) = app
        .post(
            "/api/webhooks/config/1/test",
            json!({"eventType": "call.exploded"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&resp), "validation_failed");
}

/// Statuses of the outbound events of configuration `id`.
async fn event_statuses(app: &TestApp, id: i64) -> Vec<String> {
    sea_orm::sqlx::query_scalar(
        "SELECT status FROM webhook_events WHERE webhook_config_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(app.db.get_postgres_connection_pool())
    .await
    .expect("statuses")
}

#[tokio::test]
async fn a_test_delivery_is_written_only_once_final_even_when_its_client_hangs_up() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config_for(&app, &receiver).await;
    let hold = receiver.hold();
    let client = {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/api/webhooks/config/{id}/test")),
            app.token.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"eventType": "call.completed"}))
                .send()
                .await
        })
    };
    // The receiver has the request and holds its answer: the attempt is in flight.
    assert_eq!(
        receiver
            .wait_for(1, std::time::Duration::from_secs(30))
            .await
            .len(),
        1
    );
    assert!(
        event_statuses(&app, id).await.is_empty(),
        "nothing is written while the attempt is in flight"
    );
    // The client hangs up; then the receiver answers.
    client.abort();
    let _ = client.await;
    drop(hold);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let statuses = loop {
        let statuses = event_statuses(&app, id).await;
        if !statuses.is_empty() || std::time::Instant::now() > deadline {
            break statuses;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(statuses, ["delivered"], "recorded once, final");
}
