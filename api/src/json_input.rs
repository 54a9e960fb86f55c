//! Request bodies read strictly: JSON that does not parse is `invalid_body`, JSON whose fields do
//! not fit the schema is `validation_failed`, and a string field takes only a JSON string.

use std::borrow::Cow;

use poem::{FromRequest, IntoResponse, Request, RequestBody};
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

use crate::error::{ApiError, ErrorResponse};

/// A JSON request body of type `T`, documented as poem-openapi's `Json<T>` is.
///
/// poem-openapi's `Json<T>` answers both a syntax error and a schema mismatch with the same
/// error; clients need to tell "this is not JSON" from "this field is wrong".
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || essence
                .strip_prefix("application/")
                .is_some_and(|subtype| subtype.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = Vec::<u8>::from_request(request, body).await?;
        if bytes.is_empty() {
            return Err(refuse(ApiError::InvalidBody(
                "the request body is empty; a JSON object is required".into(),
            )));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            refuse(ApiError::InvalidBody(format!(
                "the request body is not valid JSON: {e}"
            )))
        })?;
        T::parse_from_json(Some(value))
            .map(Self)
            .map_err(|e| refuse(ApiError::Validation(e.into_message())))
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

/// An extractor's error as the api's one JSON error shape.
fn refuse(err: ApiError) -> poem::Error {
    poem::Error::from_response(ErrorResponse::from(err).into_response())
}

/// A string field that accepts only a JSON string.
///
/// poem-openapi's `String` also takes numbers and booleans (`"name": 12345` becomes `"12345"`),
/// which the contract's string fields must refuse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Text(pub String);

impl Text {
    /// The string given.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;

    type RawValueType = String;

    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Ok(Self(s)),
            Value::Null => Err(ParseError::custom("a required string is missing")),
            other => Err(ParseError::custom(format!(
                "expected a JSON string, found {}",
                json_kind(&other)
            ))),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// How a JSON value that is not a string reads in an error message.
fn json_kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_takes_a_json_string() {
        assert_eq!(
            Text::parse_from_json(Some(json!("CRM"))).ok(),
            Some(Text("CRM".into()))
        );
    }

    #[test]
    fn text_refuses_numbers_booleans_arrays_and_objects() {
        for value in [json!(12345), json!(true), json!(["a"]), json!({"a": 1})] {
            assert!(
                Text::parse_from_json(Some(value.clone())).is_err(),
                "{value}"
            );
        }
    }

    #[test]
    fn json_and_json_suffixed_content_types_are_accepted() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(JsonBody::<Text>::check_content_type(ok), "{ok}");
        }
        for refused in ["text/plain", "application/x-www-form-urlencoded", "json"] {
            assert!(!JsonBody::<Text>::check_content_type(refused), "{refused}");
        }
    }
}
