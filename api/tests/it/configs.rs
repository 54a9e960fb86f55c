//! `/api/webhooks/config`: CRUD per the contract, and every validation rule.

use entity::{EventStatus, webhook_events};
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::{Value, json};

use crate::common::{NewEvent, TestApp, error_code, example_config, is_iso8601, merge};

#[tokio::test]
async fn create_answers_201_with_the_contract_fields() {
    let app = TestApp::spawn().await;
    let (status, body) = app.post("/api/webhooks/config", example_config()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(
        body["message"],
        "Webhook configuration created successfully"
    );
    let w = &body["webhook"];
    assert!(w["id"].as_i64().is_some());
    assert_eq!(w["name"], "Marketing Platform");
    assert_eq!(w["url"], "https://marketing.example.com/webhooks/11wire");
    assert_eq!(
        w["eventTypes"],
        json!(["call.completed", "conversation.completed"])
    );
    assert_eq!(w["status"], "active");
    assert_eq!(w["headers"], json!({"X-API-Key": "marketing-api-key-456"}));
    assert_eq!(
        w["retryConfig"],
        json!({"maxAttempts": 3, "initialDelay": 60, "maxDelay": 1800, "backoffFactor": 2.0})
    );
    assert_eq!(
        w["filters"],
        json!({"campaigns": ["campaign-789"], "outcomes": ["lead_qualified"]})
    );
    assert_eq!(
        w["metadata"],
        json!({"owner": "marketing-team", "priority": "medium"})
    );
    assert!(
        is_iso8601(&w["createdAt"]) && is_iso8601(&w["updatedAt"]),
        "{w}"
    );
}

#[tokio::test]
async fn create_shows_the_secret_once() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    assert_eq!(created["secret"], "webhooksecret123");
    let (_, details) = app
        .get(&format!("/api/webhooks/config/{}", created["id"]))
        .await;
    assert!(details["webhook"].get("secret").is_none(), "{details}");
    let (_, list) = app.get("/api/webhooks/config").await;
    assert!(list["webhooks"][0].get("secret").is_none(), "{list}");
    assert!(!list.to_string().contains("webhooksecret123"));
}

#[tokio::test]
async fn create_without_secret_generates_a_standard_webhooks_secret() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({"secret": null})).await;
    let secret = created["secret"].as_str().expect("secret");
    let key = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    assert_eq!(key.len(), 44, "base64 of 32 bytes: {secret}");
}

#[tokio::test]
async fn create_fills_defaults_for_omitted_optional_fields() {
    let app = TestApp::spawn().await;
    let body =
        json!({"name": "Minimal", "url": "http://example.com/h", "eventTypes": ["call.created"]});
    let (status, body) = app.post("/api/webhooks/config", body).await;
    assert_eq!(status, 201, "{body}");
    let w = &body["webhook"];
    assert_eq!(w["status"], "active");
    assert_eq!(
        w["retryConfig"],
        json!({"maxAttempts": 5, "initialDelay": 30, "maxDelay": 3600, "backoffFactor": 2.0})
    );
    assert_eq!(w["headers"], json!({}));
    assert_eq!(w["filters"], json!({}));
}

#[tokio::test]
async fn header_names_are_echoed_exactly_as_given_everywhere() {
    let app = TestApp::spawn().await;
    let headers = json!({"X-API-Key": "crm-api-key-123", "x-lower": "1", "X-MiXeD-CaSe": "2"});
    let created = app.create_config(json!({"headers": headers})).await;
    assert_eq!(created["headers"], headers);
    let path = format!("/api/webhooks/config/{}", created["id"]);
    let (_, details) = app.get(&path).await;
    assert_eq!(details["webhook"]["headers"], headers);
    let (_, list) = app.get("/api/webhooks/config").await;
    assert_eq!(list["webhooks"][0]["headers"], headers);
    let (status, updated) = app.put(&path, json!({"name": "renamed"})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["webhook"]["headers"], headers);
}

#[tokio::test]
async fn the_same_header_name_in_two_cases_is_refused() {
    let app = TestApp::spawn().await;
    let mut body = example_config();
    merge(
        &mut body,
        json!({"headers": {"X-Api-Key": "a", "x-api-key": "b"}}),
    );
    let (status, answer) = app.post("/api/webhooks/config", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "validation_failed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("twice")),
        "{answer}"
    );
}

#[tokio::test]
async fn partial_retry_config_keeps_defaults_for_the_rest() {
    let app = TestApp::spawn().await;
    let w = app
        .create_config(json!({"retryConfig": {"maxAttempts": 7}}))
        .await;
    assert_eq!(
        w["retryConfig"],
        json!({"maxAttempts": 7, "initialDelay": 30, "maxDelay": 3600, "backoffFactor": 2.0})
    );
}

#[tokio::test]
async fn list_returns_every_configuration_in_creation_order() {
    let app = TestApp::spawn().await;
    app.create_config(json!({"name": "CRM Integration"})).await;
    app.create_config(json!({"name": "Analytics Platform"}))
        .await;
    let (status, body) = app.get("/api/webhooks/config").await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], json!(true));
    let names: Vec<&str> = body["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, ["CRM Integration", "Analytics Platform"]);
}

#[tokio::test]
async fn details_return_the_configuration() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let (status, body) = app
        .get(&format!("/api/webhooks/config/{}", created["id"]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], json!(true));
    let mut expected = created.clone();
    expected.as_object_mut().expect("object").remove("secret");
    assert_eq!(body["webhook"], expected);
}

#[tokio::test]
async fn details_of_an_unknown_id_is_404() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/webhooks/config/999999").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn a_non_numeric_id_is_400() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/webhooks/config/abc").await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_parameter");
}

#[tokio::test]
async fn update_changes_only_the_fields_given() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let patch = json!({
        "name": "Marketing Platform - Updated",
        "url": "https://new-marketing.example.com/webhooks/11wire",
        "status": "active",
        "eventTypes": ["call.created", "call.completed", "conversation.completed"],
        "filters": {"campaigns": ["campaign-789", "campaign-101"], "outcomes": ["lead_qualified", "appointment_set"]}
    });
    let (status, body) = app
        .put(&format!("/api/webhooks/config/{}", created["id"]), patch)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["message"],
        "Webhook configuration updated successfully"
    );
    let w = &body["webhook"];
    assert_eq!(w["name"], "Marketing Platform - Updated");
    assert_eq!(
        w["url"],
        "https://new-marketing.example.com/webhooks/11wire"
    );
    assert_eq!(
        w["eventTypes"],
        json!(["call.created", "call.completed", "conversation.completed"])
    );
    assert_eq!(
        w["filters"]["campaigns"],
        json!(["campaign-789", "campaign-101"])
    );
    assert_eq!(w["headers"], created["headers"]);
    assert_eq!(w["retryConfig"], created["retryConfig"]);
    assert_eq!(w["metadata"], created["metadata"]);
    assert_eq!(w["createdAt"], created["createdAt"]);
    assert_ne!(w["updatedAt"], created["updatedAt"]);
}

#[tokio::test]
async fn update_of_an_unknown_id_is_404() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .put("/api/webhooks/config/424242", json!({"name": "x"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn an_invalid_update_changes_nothing() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let path = format!("/api/webhooks/config/{}", created["id"]);
    let (status, _) = app
        .put(&path, json!({"name": "New name", "url": "ftp://nope"}))
        .await;
    assert_eq!(status, 400);
    let (_, after) = app.get(&path).await;
    assert_eq!(after["webhook"]["name"], "Marketing Platform");
}

#[tokio::test]
async fn deactivating_cancels_queued_deliveries() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let id = created["id"].as_i64().expect("id");
    let pending = app
        .insert_event(NewEvent::outbound(
            "call.completed",
            id,
            EventStatus::Pending,
        ))
        .await;
    let delivered = app
        .insert_event(NewEvent::outbound(
            "call.completed",
            id,
            EventStatus::Delivered,
        ))
        .await;
    let (status, _) = app
        .put(
            &format!("/api/webhooks/config/{id}"),
            json!({"status": "inactive"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(event_status(&app, pending).await, EventStatus::Cancelled);
    assert_eq!(event_status(&app, delivered).await, EventStatus::Delivered);
}

#[tokio::test]
async fn reactivating_a_disabled_configuration_clears_the_reason() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let id = created["id"].as_i64().expect("id");
    app.db
        .execute_unprepared(&format!(
            "UPDATE webhook_configs SET status = 'disabled', disabled_reason = 'endpoint answered 410 Gone', \
             disabled_at = now() WHERE id = {id}"
        ))
        .await
        .expect("disable");
    let path = format!("/api/webhooks/config/{id}");
    let (_, disabled) = app.get(&path).await;
    assert_eq!(disabled["webhook"]["status"], "disabled");
    assert_eq!(
        disabled["webhook"]["disabledReason"],
        "endpoint answered 410 Gone"
    );
    let (_, body) = app.put(&path, json!({"status": "active"})).await;
    assert_eq!(body["webhook"]["status"], "active");
    assert!(body["webhook"].get("disabledReason").is_none(), "{body}");
}

#[tokio::test]
async fn users_cannot_set_disabled() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let (status, body) = app
        .put(
            &format!("/api/webhooks/config/{}", created["id"]),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "validation_failed");
}

/// A configuration (as created) with one delivered outbound event (its id).
async fn config_with_a_delivered_event(app: &TestApp) -> (Value, i64) {
    let created = app.create_config(json!({})).await;
    let id = created["id"].as_i64().expect("id");
    let delivered = app
        .insert_event(NewEvent::outbound(
            "call.completed",
            id,
            EventStatus::Delivered,
        ))
        .await;
    (created, delivered)
}

#[tokio::test]
async fn delete_removes_the_configuration_and_keeps_its_history() {
    let app = TestApp::spawn().await;
    let (created, delivered) = config_with_a_delivered_event(&app).await;
    let id = created["id"].as_i64().expect("id");
    let pending = app
        .insert_event(NewEvent::outbound(
            "call.completed",
            id,
            EventStatus::Pending,
        ))
        .await;
    let (status, body) = app.delete(&format!("/api/webhooks/config/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": true, "message": "Webhook configuration deleted successfully"})
    );
    let (status, _) = app.get(&format!("/api/webhooks/config/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(event_status(&app, delivered).await, EventStatus::Delivered);
    assert_eq!(event_status(&app, pending).await, EventStatus::Cancelled);
}

#[tokio::test]
async fn a_deleted_configuration_keeps_its_deliveries_findable_by_config() {
    let app = TestApp::spawn().await;
    let (created, delivered) = config_with_a_delivered_event(&app).await;
    let id = created["id"].as_i64().expect("id");
    let (status, _) = app.delete(&format!("/api/webhooks/config/{id}")).await;
    assert_eq!(status, 200);

    let (status, history) = app
        .get(&format!("/api/webhooks/events?webhookConfigId={id}"))
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["total"], 1, "{history}");
    assert_eq!(history["events"][0]["id"], delivered);
    assert_eq!(history["events"][0]["webhookConfigId"], id);
    let (_, details) = app.get(&format!("/api/webhooks/events/{delivered}")).await;
    assert_eq!(details["webhookConfig"]["id"], id, "{details}");
    assert_eq!(details["webhookConfig"]["name"], created["name"]);
    assert!(
        is_iso8601(&details["webhookConfig"]["deletedAt"]),
        "{details}"
    );
}

#[tokio::test]
async fn a_deleted_configuration_is_gone_from_the_configuration_api() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let path = format!("/api/webhooks/config/{}", created["id"]);
    app.delete(&path).await;
    let (_, list) = app.get("/api/webhooks/config").await;
    assert_eq!(list["webhooks"], json!([]));
    assert_eq!(app.get(&path).await.0, 404);
    assert_eq!(app.put(&path, json!({"status": "active"})).await.0, 404);
    assert_eq!(app.delete(&path).await.0, 404);
    let test = json!({"eventType": "call.completed"});
    assert_eq!(app.post(&format!("{path}/test"), test).await.0, 404);
    let since = json!({"since": "2026-01-01T00:00:00Z"});
    assert_eq!(app.post(&format!("{path}/recover"), since).await.0, 404);
    assert_eq!(
        app.post(&format!("{path}/rotate-secret"), json!({}))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn delete_of_an_unknown_id_is_404() {
    let app = TestApp::spawn().await;
    let (status, body) = app.delete("/api/webhooks/config/31337").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

async fn event_status(app: &TestApp, id: i64) -> EventStatus {
    webhook_events::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .expect("query")
        .expect("event exists")
        .status
}

/// Each invalid create body, the expected error code, and why.
fn invalid_creates() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("empty name", json!({"name": ""}), "validation_failed"),
        ("blank name", json!({"name": "   "}), "validation_failed"),
        (
            "name over 255 chars",
            json!({"name": "x".repeat(256)}),
            "validation_failed",
        ),
        ("missing name", json!({"name": null}), "validation_failed"),
        (
            "relative url",
            json!({"url": "/hooks"}),
            "validation_failed",
        ),
        (
            "non-http url",
            json!({"url": "ftp://example.com/x"}),
            "validation_failed",
        ),
        (
            "url without host",
            json!({"url": "http://"}),
            "validation_failed",
        ),
        (
            "empty eventTypes",
            json!({"eventTypes": []}),
            "validation_failed",
        ),
        (
            "unknown event type",
            json!({"eventTypes": ["call.exploded"]}),
            "validation_failed",
        ),
        (
            "status disabled",
            json!({"status": "disabled"}),
            "validation_failed",
        ),
        (
            "status unknown",
            json!({"status": "paused"}),
            "validation_failed",
        ),
        (
            "reserved header",
            json!({"headers": {"webhook-signature": "v1,x"}}),
            "validation_failed",
        ),
        (
            "content-type header",
            json!({"headers": {"Content-Type": "text/plain"}}),
            "validation_failed",
        ),
        (
            "CRLF in header value",
            json!({"headers": {"X-A": "a\r\nX-B: b"}}),
            "validation_failed",
        ),
        (
            "invalid header name",
            json!({"headers": {"X A": "b"}}),
            "validation_failed",
        ),
        (
            "maxAttempts 0",
            json!({"retryConfig": {"maxAttempts": 0}}),
            "validation_failed",
        ),
        (
            "maxAttempts 51",
            json!({"retryConfig": {"maxAttempts": 51}}),
            "validation_failed",
        ),
        (
            "initialDelay 0",
            json!({"retryConfig": {"initialDelay": 0}}),
            "validation_failed",
        ),
        (
            "maxDelay below initialDelay",
            json!({"retryConfig": {"initialDelay": 100, "maxDelay": 50}}),
            "validation_failed",
        ),
        (
            "backoffFactor below 1",
            json!({"retryConfig": {"backoffFactor": 0.5}}),
            "validation_failed",
        ),
        (
            "negative delay",
            json!({"retryConfig": {"initialDelay": -1}}),
            "validation_failed",
        ),
        (
            "unknown retry key",
            json!({"retryConfig": {"jitter": 1}}),
            "validation_failed",
        ),
        (
            "unknown filter key",
            json!({"filters": {"regions": ["eu"]}}),
            "validation_failed",
        ),
        (
            "empty filter list",
            json!({"filters": {"campaigns": []}}),
            "validation_failed",
        ),
        (
            "metadata not an object",
            json!({"metadata": [1, 2]}),
            "validation_failed",
        ),
        ("name a number", json!({"name": 12345}), "validation_failed"),
        ("name a boolean", json!({"name": true}), "validation_failed"),
        ("url a number", json!({"url": 42}), "validation_failed"),
        (
            "secret a number",
            json!({"secret": 123456}),
            "validation_failed",
        ),
        (
            "header value a number",
            json!({"headers": {"X-Count": 3}}),
            "validation_failed",
        ),
        (
            "filter entry a number",
            json!({"filters": {"campaigns": [123]}}),
            "validation_failed",
        ),
        (
            "event type a number",
            json!({"eventTypes": [7]}),
            "validation_failed",
        ),
        (
            "secret not base64",
            json!({"secret": "not base64!"}),
            "validation_failed",
        ),
        (
            "unknown top-level field",
            json!({"colour": "blue"}),
            "validation_failed",
        ),
    ]
}

#[tokio::test]
async fn every_invalid_create_is_refused_with_400_and_stores_nothing() {
    let app = TestApp::spawn().await;
    for (why, overrides, code) in invalid_creates() {
        let mut body = example_config();
        merge(&mut body, overrides);
        let (status, json) = app.post("/api/webhooks/config", body).await;
        assert_eq!(status, 400, "{why}: {json}");
        assert_eq!(error_code(&json), code, "{why}: {json}");
    }
    let (_, list) = app.get("/api/webhooks/config").await;
    assert_eq!(list["webhooks"], json!([]));
}

#[tokio::test]
async fn a_number_as_name_is_400_validation_failed_not_a_stringified_name() {
    let app = TestApp::spawn().await;
    let mut body = example_config();
    merge(&mut body, json!({"name": 12345}));
    let (status, answer) = app.post("/api/webhooks/config", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "validation_failed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expected a JSON string, found the number 12345")),
        "{answer}"
    );
}

#[tokio::test]
async fn every_invalid_update_is_refused_with_400() {
    let app = TestApp::spawn().await;
    let created = app.create_config(json!({})).await;
    let path = format!("/api/webhooks/config/{}", created["id"]);
    for (why, patch, code) in invalid_creates() {
        if patch
            .as_object()
            .is_some_and(|o| o.values().any(Value::is_null))
        {
            continue; // omitting a field is fine in a partial update
        }
        let (status, json) = app.put(&path, patch).await;
        assert_eq!(status, 400, "{why}: {json}");
        assert_eq!(error_code(&json), code, "{why}: {json}");
    }
}
