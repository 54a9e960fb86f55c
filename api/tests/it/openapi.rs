//! The committed `openapi.json` is what the api serves; every operation is documented.

use serde_json::{Value, json};

use crate::common::TestApp;

fn generated() -> Value {
    let spec = wirehook_api::app::openapi_spec();
    serde_json::from_str(&spec).expect("spec is JSON")
}

#[test]
fn committed_openapi_json_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let committed: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .expect("openapi.json at the repository root; run `just openapi`");
    assert!(
        committed == generated(),
        "openapi.json is stale: run `just openapi` and commit it"
    );
}

#[test]
fn every_operation_has_an_id_a_tag_and_a_summary() {
    let spec = generated();
    let paths = spec["paths"].as_object().expect("paths");
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{id}: no tag"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{id}: no summary"
            );
        }
    }
}

#[test]
fn protected_operations_declare_bearer_security_and_error_responses() {
    let spec = generated();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/webhooks/") || PROVIDER_PATHS.contains(&path.as_str()) {
            continue;
        }
        for (method, op) in item.as_object().expect("path item") {
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{method} {path}: no security"
            );
            for status in ["400", "401", "404", "500"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path}: {status} undocumented"
                );
            }
        }
    }
}

/// Provider webhooks authenticate with their own signatures, not a bearer token.
const PROVIDER_PATHS: [&str; 2] = ["/api/webhooks/signalwire", "/api/webhooks/elevenlabs"];

#[test]
fn provider_webhooks_document_their_signature_ip_and_configuration_errors() {
    let spec = generated();
    for path in PROVIDER_PATHS {
        let op = &spec["paths"][path]["post"];
        assert!(op.is_object(), "POST {path} is documented");
        assert!(
            op.get("security").is_none(),
            "POST {path} needs no bearer token"
        );
        for status in ["200", "400", "401", "403", "503"] {
            assert!(
                op["responses"].get(status).is_some(),
                "POST {path}: {status} undocumented"
            );
        }
        let content = op["requestBody"]["content"].as_object().expect("content");
        assert!(content.contains_key("application/json"), "POST {path}");
    }
}

#[tokio::test]
async fn the_served_spec_is_the_generated_one() {
    let app = TestApp::spawn().await;
    let served: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(served["paths"], generated()["paths"]);
}

#[test]
fn attempt_headers_are_string_maps() {
    let spec = generated();
    let attempt = &spec["components"]["schemas"]["DeliveryAttempt"]["properties"];
    for field in ["requestHeaders", "responseHeaders"] {
        assert_eq!(attempt[field]["type"], "object", "{field}");
        assert_eq!(
            attempt[field]["additionalProperties"],
            json!({"type": "string"}),
            "{field}"
        );
    }
}

#[test]
fn configurations_answer_metadata_as_an_object_and_event_types_from_the_catalog() {
    let spec = generated();
    let config = &spec["components"]["schemas"]["WebhookConfig"]["properties"];
    assert_eq!(config["metadata"]["type"], "object");
    assert_eq!(
        config["eventTypes"]["items"],
        json!({"$ref": "#/components/schemas/EventType"})
    );
}

#[test]
fn provider_webhooks_document_their_signature_headers() {
    let spec = generated();
    for (path, headers) in [
        (
            "/api/webhooks/signalwire",
            &[
                "X-SignalWire-Signature",
                "X-SignalWire-Sha256-Signature",
                "X-Twilio-Signature",
            ][..],
        ),
        ("/api/webhooks/elevenlabs", &["ElevenLabs-Signature"][..]),
    ] {
        let params = spec["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("POST {path}: no parameters"));
        for name in headers {
            let param = params
                .iter()
                .find(|p| p["name"] == *name)
                .unwrap_or_else(|| panic!("POST {path}: {name} undocumented"));
            assert_eq!(param["in"], "header", "{name}");
            assert_eq!(param["required"], false, "{name}");
            assert_eq!(param["schema"]["type"], "string", "{name}");
            assert!(param["description"].is_string(), "{name}");
        }
    }
}

#[test]
fn the_elevenlabs_webhook_documents_only_a_json_body() {
    let spec = generated();
    let content = spec["paths"]["/api/webhooks/elevenlabs"]["post"]["requestBody"]["content"]
        .as_object()
        .expect("content");
    let media: Vec<&String> = content.keys().collect();
    assert_eq!(media, ["application/json"]);
}
