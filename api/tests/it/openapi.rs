//! The committed `openapi.json` is what the api serves; every operation is documented, in a
//! form client generators read, and the server does what the document says.

use serde_json::{Value, json};
use wirehook_api::openapi_doc::READS_ANY_CONTENT_TYPE;

use crate::common::TestApp;
use crate::schema_instances::{Schemas, object_at};

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
    assert!(
        served == generated(),
        "/openapi.json differs from `api openapi`"
    );
}

#[tokio::test]
async fn the_docs_page_shows_the_generated_spec() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(app.url("/docs"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(page.contains(&wirehook_api::app::openapi_spec()));
}

/// Every operation: path, method and the operation object.
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            found.push((path.clone(), method.clone(), op.clone()));
        }
    }
    found
}

fn operation_id(op: &Value) -> &str {
    op["operationId"].as_str().expect("operationId")
}

/// The schema of an operation's JSON request body, if it has one.
fn json_body_schema(op: &Value) -> Option<&Value> {
    op["requestBody"]["content"]
        .as_object()?
        .iter()
        .find(|(media, _)| media.starts_with("application/json"))
        .map(|(_, media)| &media["schema"])
}

/// Sends `body` to the operation, path parameters set to an id nothing has.
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let path: Vec<&str> = path
        .split('/')
        .map(|s| {
            if s.starts_with('{') {
                "9223372036854775807"
            } else {
                s
            }
        })
        .collect();
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let resp = app
        .client
        .request(method, app.url(&path.join("/")))
        .bearer_auth(&app.token)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    crate::common::read(resp).await
}

/// Walks every schema object of `node`, depth first.
fn each_schema(node: &Value, visit: &mut impl FnMut(&Value)) {
    match node {
        Value::Object(map) => {
            visit(node);
            map.values().for_each(|child| each_schema(child, visit));
        }
        Value::Array(items) => items.iter().for_each(|child| each_schema(child, visit)),
        _ => {}
    }
}

#[test]
fn no_all_of_entry_is_a_bare_description() {
    let spec = generated();
    each_schema(&spec, &mut |schema| {
        for entry in schema["allOf"].as_array().into_iter().flatten() {
            assert!(
                entry.get("$ref").is_some() || entry.get("type").is_some(),
                "allOf entry without a $ref or a type in {schema}"
            );
        }
    });
}

#[test]
fn every_operation_reading_a_json_body_documents_415_in_the_error_shape() {
    let spec = generated();
    let mut documented = 0;
    for (path, method, op) in operations(&spec) {
        if op.get("requestBody").is_none() || READS_ANY_CONTENT_TYPE.contains(&operation_id(&op)) {
            continue;
        }
        let answer = &op["responses"]["415"];
        let schemas: Vec<&Value> = answer["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}: 415 undocumented"))
            .values()
            .map(|media| &media["schema"])
            .collect();
        assert_eq!(
            schemas,
            [&json!({"$ref": "#/components/schemas/ErrorBody"})],
            "{method} {path}"
        );
        documented += 1;
    }
    assert_eq!(
        documented, 6,
        "create, update, test, rotate, recover, publish"
    );
}

#[tokio::test]
async fn operations_refuse_other_content_types_iff_documented() {
    let spec = generated();
    let schemas = Schemas(&spec);
    let app = TestApp::spawn().await;
    for (path, method, op) in operations(&spec) {
        let Some(schema) = json_body_schema(&op) else {
            continue;
        };
        let body = schemas.minimal(schema);
        let (status, answer) = send(&app, &method, &path, "text/plain", &body).await;
        let documented = op["responses"].get("415").is_some();
        assert_eq!(
            status == 415,
            documented,
            "{method} {path}: 415 documented: {documented}; a text/plain body got {status} {answer}"
        );
    }
}

#[test]
fn every_request_object_refuses_unknown_fields_in_the_document() {
    let spec = generated();
    for name in [
        "ConfigIn",
        "ConfigPatch",
        "RetryConfigIn",
        "FiltersIn",
        "TestIn",
        "RotateIn",
        "RecoverIn",
        "PublishEvent",
    ] {
        assert_eq!(
            spec["components"]["schemas"][name]["additionalProperties"],
            json!(false),
            "{name}"
        );
    }
}

/// A field name no request type has.
const UNKNOWN_FIELD: &str = "wirehookUnknownField";

/// True when the server refused the body for holding [`UNKNOWN_FIELD`].
fn refused_unknown_field(status: u16, answer: &Value) -> bool {
    status == 400
        && answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(UNKNOWN_FIELD))
}

#[tokio::test]
async fn request_schemas_refuse_unknown_fields_iff_documented() {
    let spec = generated();
    let schemas = Schemas(&spec);
    let app = TestApp::spawn().await;
    let mut checked = 0;
    for (path, method, op) in operations(&spec) {
        let Some(root) = json_body_schema(&op) else {
            continue;
        };
        for (at, object) in schemas.objects(root) {
            let place = format!("{method} {path} at /{}", at.join("/"));
            let body = schemas.minimal_with(root, &at);
            let (status, answer) = send(&app, &method, &path, "application/json", &body).await;
            assert!(
                !(status == 400 && answer["error"]["code"] == "invalid_body"),
                "{place}: the minimal body {body} does not parse: {answer}"
            );
            let mut probe = body.clone();
            let value = match &object["additionalProperties"] {
                Value::Object(values) => schemas.minimal(&Value::Object(values.clone())),
                _ => json!("x"),
            };
            object_at(&mut probe, &at).insert(UNKNOWN_FIELD.into(), value);
            let (status, answer) = send(&app, &method, &path, "application/json", &probe).await;
            let closed = object["additionalProperties"] == json!(false);
            assert_eq!(
                refused_unknown_field(status, &answer),
                closed,
                "{place}: additionalProperties false: {closed}; {probe} got {status} {answer}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} request objects found");
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

#[test]
fn source_values_are_named_for_generators() {
    let spec = generated();
    let source = &spec["components"]["schemas"]["Source"];
    assert_eq!(
        source["enum"],
        json!(["signalwire", "elevenlabs", "11wire"])
    );
    assert_eq!(
        source["x-enum-varnames"],
        json!(["SignalWire", "ElevenLabs", "Platform"])
    );
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
fn urls_are_uris_and_timestamps_date_times() {
    let spec = generated();
    let mut urls = 0;
    for (name, schema) in spec["components"]["schemas"].as_object().expect("schemas") {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            if field == "url" {
                assert_eq!(property["format"], "uri", "{name}.{field}");
                urls += 1;
            }
            if field.ends_with("At") || field.ends_with("Since") || field == "until" {
                assert_eq!(property["format"], "date-time", "{name}.{field}");
            }
        }
    }
    assert!(
        urls >= 4,
        "ConfigIn, ConfigPatch, WebhookConfig, WebhookConfigSummary"
    );
}
