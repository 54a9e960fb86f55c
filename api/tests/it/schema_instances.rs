//! Minimal instances of the OpenAPI document's schemas: bodies that parse as what the document
//! describes, for tests that hold the server to its document operation by operation.

use serde_json::{Map, Value, json};

/// The document's schemas, for resolving `$ref`s.
pub struct Schemas<'a>(pub &'a Value);

impl<'a> Schemas<'a> {
    /// `schema` with a `$ref` (directly or as the single `allOf` entry) replaced by its target.
    pub fn resolve(&self, schema: &'a Value) -> &'a Value {
        let target = schema["$ref"].as_str().or_else(|| {
            match schema["allOf"].as_array().map(Vec::as_slice) {
                Some([only]) => only["$ref"].as_str(),
                _ => None,
            }
        });
        match target.and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => self.resolve(&self.0["components"]["schemas"][name]),
            None => schema,
        }
    }

    /// The smallest value `schema` accepts: required properties only, the first enum value,
    /// the fewest items, the shortest strings, the lowest numbers.
    pub fn minimal(&self, schema: &'a Value) -> Value {
        let schema = self.resolve(schema);
        if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
            return first.clone();
        }
        match schema["type"].as_str() {
            Some("string") => match schema["format"].as_str() {
                Some("uri") => json!("http://127.0.0.1:9/hook"),
                Some("date-time") => json!("2024-01-01T00:00:00Z"),
                _ => json!("x".repeat(length(&schema["minLength"]).max(1))),
            },
            Some("integer") => json!(schema["minimum"].as_f64().map_or(1, |m| m.ceil() as i64)),
            Some("number") => json!(schema["minimum"].as_f64().unwrap_or(1.0)),
            Some("boolean") => json!(false),
            Some("array") => {
                let item = self.minimal(&schema["items"]);
                Value::Array(vec![item; length(&schema["minItems"])])
            }
            _ => {
                let mut object = Map::new();
                for name in schema["required"].as_array().into_iter().flatten() {
                    let name = name.as_str().expect("required names are strings");
                    object.insert(name.to_owned(), self.minimal(&schema["properties"][name]));
                }
                Value::Object(object)
            }
        }
    }

    /// Every object a body of `schema` can hold, as the property path to it (the body itself
    /// first) and its schema. Maps and free-form objects count; their values do not.
    pub fn objects(&self, schema: &'a Value) -> Vec<(Vec<String>, &'a Value)> {
        let mut found = Vec::new();
        self.collect_objects(schema, Vec::new(), &mut found);
        found
    }

    fn collect_objects(
        &self,
        schema: &'a Value,
        path: Vec<String>,
        found: &mut Vec<(Vec<String>, &'a Value)>,
    ) {
        let schema = self.resolve(schema);
        let is_object = schema["type"] == "object" || schema.get("properties").is_some();
        if !is_object || path.len() > 4 {
            return;
        }
        found.push((path.clone(), schema));
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let mut inner = path.clone();
            inner.push(name.clone());
            self.collect_objects(property, inner, found);
        }
    }

    /// The minimal body of `root` with an object at `path`: the minimal one of each property
    /// on the way that the minimal body lacks.
    pub fn minimal_with(&self, root: &'a Value, path: &[String]) -> Value {
        let mut body = self.minimal(root);
        let mut schema = self.resolve(root);
        let mut slot = &mut body;
        for name in path {
            let property = &schema["properties"][name];
            let object = slot.as_object_mut().expect("objects hold the path");
            slot = object
                .entry(name.clone())
                .or_insert_with(|| self.minimal(property));
            schema = self.resolve(property);
        }
        body
    }
}

fn length(v: &Value) -> usize {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// The object at `path` in `body`.
pub fn object_at<'b>(body: &'b mut Value, path: &[String]) -> &'b mut Map<String, Value> {
    let mut slot = body;
    for name in path {
        slot = &mut slot[name.as_str()];
    }
    slot.as_object_mut().expect("an object at the path")
}
