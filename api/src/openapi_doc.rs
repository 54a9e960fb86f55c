//! The OpenAPI document as published: what poem-openapi writes, finished so that client
//! generators (openapi-python-client, openapi-typescript) and schemathesis read it the way the
//! server behaves. `api openapi`, `/openapi.json` and `/docs` all serve [`finish`]ed documents.
//!
//! Each fix below is something poem-openapi cannot express; whatever an attribute on a type can
//! say is said there instead. The document is edited as a `serde_yaml::Value` only because that
//! tree keeps keys in order: this workspace builds serde_json without `preserve_order`, so a round
//! trip through `serde_json::Value` would sort every key, schema properties included.

use std::collections::BTreeSet;

use entity::Source;
use sea_orm::Iterable;
use serde_yaml::{Mapping, Value};

/// Operations whose body is read whatever its content type (provider webhooks: every request is
/// recorded, even one the handler cannot read), so they never answer 415.
pub const READS_ANY_CONTENT_TYPE: [&str; 2] = ["inbound.signalwire", "inbound.elevenlabs"];

const SCHEMA_PREFIX: &str = "#/components/schemas/";

/// `spec` (poem-openapi's JSON document) with every fix applied, as pretty JSON.
pub fn finish(spec: &str) -> String {
    let mut doc: Value =
        serde_json::from_str(spec).expect("poem-openapi writes its document as JSON");
    drop_repeated_annotations(&mut doc);
    close_request_objects(&mut doc);
    document_unsupported_media_type(&mut doc);
    mark_urls(&mut doc);
    name_source_values(&mut doc);
    mark_nullable(&mut doc);
    serde_json::to_string_pretty(&doc).expect("a tree read from JSON writes back as JSON")
}

/// poem-openapi documents a field that refers to another schema as
/// `{"description": D, "allOf": [{"$ref": R}, {"description": D}]}`. The second entry only
/// repeats the field's own annotations, and generators cannot merge a schema without a type into
/// `allOf`: openapi-python-client drops every model holding such a field pointing at an enum and
/// turns those pointing at objects into duplicate classes. Dropping the repeated entries leaves
/// `{"description": D, "allOf": [{"$ref": R}]}`, which they read as the referenced schema.
fn drop_repeated_annotations(node: &mut Value) {
    match node {
        Value::Mapping(map) => {
            if let Some(Value::Sequence(all_of)) = map.get("allOf") {
                let kept: Vec<Value> = all_of
                    .iter()
                    .filter(|entry| !repeats_parent(entry, map))
                    .cloned()
                    .collect();
                map.insert("allOf".into(), Value::Sequence(kept));
            }
            for (_, child) in map.iter_mut() {
                drop_repeated_annotations(child);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(drop_repeated_annotations),
        _ => {}
    }
}

/// True for an inline `allOf` entry whose every keyword the parent schema already has, equal.
fn repeats_parent(entry: &Value, parent: &Mapping) -> bool {
    entry.as_mapping().is_some_and(|entry| {
        !entry.contains_key("$ref") && entry.iter().all(|(k, v)| parent.get(k) == Some(v))
    })
}

/// Every request body refuses fields it does not know (`deny_unknown_fields` on each request
/// type: a misspelt optional field is an error, not silently ignored), which poem-openapi does
/// not document. Marks each object schema reachable from a request body
/// `additionalProperties: false`; maps (which declare `additionalProperties` already) stay open.
/// `openapi::request_schemas_refuse_unknown_fields_iff_documented` holds the server to it.
fn close_request_objects(doc: &mut Value) {
    let mut reachable = BTreeSet::new();
    if let (Some(paths), Some(schemas)) = (doc.get("paths"), component_schemas(doc)) {
        for operation in operations(paths) {
            let content = operation
                .get("requestBody")
                .and_then(|body| body.get("content"))
                .and_then(Value::as_mapping);
            for media in content.into_iter().flat_map(Mapping::values) {
                if let Some(schema) = media.get("schema") {
                    collect_refs(schema, schemas, &mut reachable);
                }
            }
        }
    }
    let Some(schemas) = component_schemas_mut(doc) else {
        return;
    };
    for name in reachable {
        if let Some(Value::Mapping(schema)) = schemas.get_mut(name.as_str())
            && schema.contains_key("properties")
            && !schema.contains_key("additionalProperties")
        {
            schema.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
}

/// Adds to `found` the name of every component schema `schema` refers to, transitively.
fn collect_refs(schema: &Value, schemas: &Mapping, found: &mut BTreeSet<String>) {
    let Some(map) = schema.as_mapping() else {
        return;
    };
    if let Some(name) = map
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(SCHEMA_PREFIX))
        && found.insert(name.to_owned())
        && let Some(target) = schemas.get(name)
    {
        collect_refs(target, schemas, found);
    }
    let properties = map.get("properties").and_then(Value::as_mapping);
    let combined = ["allOf", "anyOf", "oneOf"]
        .into_iter()
        .filter_map(|k| map.get(k).and_then(Value::as_sequence))
        .flatten();
    let single = ["items", "additionalProperties"]
        .into_iter()
        .filter_map(|k| map.get(k));
    for child in properties
        .into_iter()
        .flat_map(Mapping::values)
        .chain(combined)
        .chain(single)
    {
        collect_refs(child, schemas, found);
    }
}

/// A JSON body in another content type is refused with 415 (`unsupported_media_type`, in the
/// usual error shape), which poem-openapi does not document; schemathesis'
/// `status_code_conformance` fails on an undocumented status. Adds a 415 answer, with the body of
/// the operation's 400, to every operation with a request body except [`READS_ANY_CONTENT_TYPE`].
/// `openapi::operations_refuse_other_content_types_iff_documented` holds the server to it.
fn document_unsupported_media_type(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_mapping_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_mapping_mut) {
        for operation in item.values_mut().filter_map(Value::as_mapping_mut) {
            let reads_any = operation
                .get("operationId")
                .and_then(Value::as_str)
                .is_some_and(|id| READS_ANY_CONTENT_TYPE.contains(&id));
            if !operation.contains_key("requestBody") || reads_any {
                continue;
            }
            let Some(Value::Mapping(responses)) = operation.get_mut("responses") else {
                continue;
            };
            let Some(Value::Mapping(mut answer)) = responses.get("400").cloned() else {
                continue;
            };
            answer.insert(
                "description".into(),
                "The body is not `application/json`.".into(),
            );
            responses.insert("415".into(), Value::Mapping(answer));
            sort_by_key(responses);
        }
    }
}

/// Every field named `url` in this API is an absolute http(s) URL: validated as one on the way
/// in, echoed as stored on the way out. poem-openapi writes it as a plain string; `format: uri`
/// lets generators and schemathesis treat it as a URL.
fn mark_urls(doc: &mut Value) {
    let Some(schemas) = component_schemas_mut(doc) else {
        return;
    };
    for schema in schemas.values_mut() {
        let Some(Value::Mapping(url)) = schema.get_mut("properties").and_then(|p| p.get_mut("url"))
        else {
            continue;
        };
        if url.get("type").and_then(Value::as_str) == Some("string") && !url.contains_key("format")
        {
            url.insert("format".into(), "uri".into());
        }
    }
}

/// Request fields where `null` means something (a `MaybeUndefined` field: absent keeps the
/// value, `null` clears it), which poem-openapi does not mark `nullable`.
const NULLABLE_FIELDS: [(&str, &str); 1] = [("ConfigPatch", "ordering")];

/// Marks each of [`NULLABLE_FIELDS`] `nullable: true` (with `type: object` when it is a bare
/// reference), so fuzzers and generated clients may send the `null` the server accepts.
fn mark_nullable(doc: &mut Value) {
    let Some(schemas) = component_schemas_mut(doc) else {
        return;
    };
    for (schema, field) in NULLABLE_FIELDS {
        if let Some(Value::Mapping(property)) = schemas
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
        {
            // OpenAPI 3.0 wants a `type` beside `nullable` (a bare `allOf` has none).
            if !property.contains_key("type") {
                property.insert("type".into(), "object".into());
            }
            property.insert("nullable".into(), true.into());
        }
    }
}

/// `11wire` is not an identifier, so generators name that `Source` value by position
/// (`VALUE_2`); `x-enum-varnames` gives every value the name of its Rust variant instead.
fn name_source_values(doc: &mut Value) {
    let Some(Value::Mapping(schema)) = doc
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(|s| s.get_mut("Source"))
    else {
        return;
    };
    let Some(values) = schema.get("enum").and_then(Value::as_sequence) else {
        return;
    };
    let names: Option<Vec<Value>> = values
        .iter()
        .map(|value| {
            Source::iter()
                .find(|source| value.as_str() == Some(source.as_str()))
                .map(|source| format!("{source:?}").into())
        })
        .collect();
    if let Some(names) = names {
        schema.insert("x-enum-varnames".into(), Value::Sequence(names));
    }
}

/// The `components.schemas` map of `doc`.
fn component_schemas(doc: &Value) -> Option<&Mapping> {
    doc.get("components")?.get("schemas")?.as_mapping()
}

/// The `components.schemas` map of `doc`, to change.
fn component_schemas_mut(doc: &mut Value) -> Option<&mut Mapping> {
    doc.get_mut("components")?
        .get_mut("schemas")?
        .as_mapping_mut()
}

/// Every operation object under `paths`.
fn operations(paths: &Value) -> impl Iterator<Item = &Value> {
    paths
        .as_mapping()
        .into_iter()
        .flat_map(Mapping::values)
        .filter_map(Value::as_mapping)
        .flat_map(Mapping::values)
}

/// Reorders `map` by key (status codes of a `responses` object read in order).
fn sort_by_key(map: &mut Mapping) {
    let mut entries: Vec<(Value, Value)> = std::mem::take(map).into_iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.as_str().cmp(&b.as_str()));
    map.extend(entries);
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::finish;

    fn finished(doc: Value) -> Value {
        serde_json::from_str(&finish(&doc.to_string())).expect("JSON")
    }

    #[test]
    fn an_all_of_entry_repeating_the_fields_description_is_dropped() {
        let doc = finished(
            json!({"components": {"schemas": {"A": {"properties": {"b": {
                "description": "D",
                "allOf": [{"$ref": "#/components/schemas/B"}, {"description": "D"}]
            }}}}}}),
        );
        assert_eq!(
            doc["components"]["schemas"]["A"]["properties"]["b"],
            json!({"description": "D", "allOf": [{"$ref": "#/components/schemas/B"}]})
        );
    }

    #[test]
    fn an_all_of_entry_saying_something_new_is_kept() {
        let field = json!({"allOf": [{"$ref": "#/components/schemas/B"}, {"minLength": 1}]});
        let doc = finished(json!({"components": {"schemas": {"A": {"properties": {"b": field}}}}}));
        assert_eq!(doc["components"]["schemas"]["A"]["properties"]["b"], field);
    }

    #[test]
    fn keys_keep_their_order() {
        let spec = r#"{"openapi":"3.0.0","paths":{},"components":{"schemas":{"Z":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"string"}}}}}}"#;
        let out: String = finish(spec).split_whitespace().collect();
        assert_eq!(out, spec.replace(' ', ""));
    }

    #[test]
    fn object_schemas_reachable_from_a_request_body_are_closed_and_maps_stay_open() {
        let doc = finished(json!({
            "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/In"}}}}}}},
            "components": {"schemas": {
                "In": {"type": "object", "properties": {
                    "nested": {"description": "N", "allOf": [{"$ref": "#/components/schemas/Nested"}]},
                    "map": {"type": "object", "additionalProperties": {"type": "string"}}
                }},
                "Nested": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "Out": {"type": "object", "properties": {"o": {"type": "integer"}}}
            }}
        }));
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["In"]["additionalProperties"], json!(false));
        assert_eq!(schemas["Nested"]["additionalProperties"], json!(false));
        assert_eq!(
            schemas["In"]["properties"]["map"]["additionalProperties"],
            json!({"type": "string"})
        );
        assert!(schemas["Out"].get("additionalProperties").is_none());
    }

    #[test]
    fn operations_with_a_body_document_415_like_their_400_in_status_order() {
        let bad = json!({"description": "bad", "content": {"application/json": {}}});
        let doc = finished(json!({"paths": {"/x": {
            "post": {"operationId": "x.post", "requestBody": {},
                     "responses": {"200": {}, "400": bad, "500": {}}},
            "get": {"operationId": "x.get", "responses": {"200": {}, "400": bad}}
        }}}));
        let post = &doc["paths"]["/x"]["post"]["responses"];
        assert_eq!(post["415"]["content"], bad["content"]);
        let order: Vec<&String> = post.as_object().expect("responses").keys().collect();
        assert_eq!(order, ["200", "400", "415", "500"]);
        assert!(doc["paths"]["/x"]["get"]["responses"].get("415").is_none());
    }

    #[test]
    fn provider_webhooks_do_not_document_415() {
        let doc = finished(json!({"paths": {"/p": {"post": {
            "operationId": "inbound.elevenlabs", "requestBody": {},
            "responses": {"400": {"description": "bad"}}
        }}}}));
        assert!(doc["paths"]["/p"]["post"]["responses"].get("415").is_none());
    }

    #[test]
    fn url_fields_are_uris() {
        let doc = finished(json!({"components": {"schemas": {"A": {"properties": {
            "url": {"type": "string"}, "name": {"type": "string"}
        }}}}}));
        let properties = &doc["components"]["schemas"]["A"]["properties"];
        assert_eq!(properties["url"]["format"], "uri");
        assert!(properties["name"].get("format").is_none());
    }

    #[test]
    fn source_values_are_named_after_their_variants() {
        let doc = finished(json!({"components": {"schemas": {"Source": {
            "type": "string", "enum": ["signalwire", "elevenlabs", "11wire"]
        }}}}));
        assert_eq!(
            doc["components"]["schemas"]["Source"]["x-enum-varnames"],
            json!(["SignalWire", "ElevenLabs", "Platform"])
        );
    }
}
