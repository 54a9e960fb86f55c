//! A request body kept as the exact bytes received, for signature checks, and documented in
//! OpenAPI as the body the provider sends.

use std::marker::PhantomData;

use bytes::Bytes;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

/// The raw body of a provider webhook and its `Content-Type`, documented as `K` says.
///
/// Any content type is accepted here, so that every request can be audited; the handler decides
/// what it can read. The body size limit is the application's (413 above it).
#[derive(Debug, Clone)]
pub struct RawBody<K> {
    /// The bytes exactly as received.
    pub bytes: Bytes,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    kind: PhantomData<fn() -> K>,
}

/// What a provider sends, as the operation documents it. Documentation only: [`RawBody`] reads
/// whatever arrives either way.
pub trait BodyKind {
    /// The request body's description.
    const DESCRIPTION: &'static str;
    /// The media types documented, each as a JSON object.
    const CONTENT_TYPES: &'static [&'static str];
}

/// SignalWire: JSON call events, and form-encoded cXML callbacks.
#[derive(Debug, Clone)]
pub enum JsonOrForm {}

impl BodyKind for JsonOrForm {
    const DESCRIPTION: &'static str = "The provider's event exactly as it sends it: JSON, or for \
         cXML callbacks a form-encoded body. The signature covers these exact bytes.";
    const CONTENT_TYPES: &'static [&'static str] =
        &["application/json", "application/x-www-form-urlencoded"];
}

/// ElevenLabs: JSON only (its handler reads nothing else).
#[derive(Debug, Clone)]
pub enum JsonOnly {}

impl BodyKind for JsonOnly {
    const DESCRIPTION: &'static str =
        "The provider's event exactly as it sends it. The signature covers these exact bytes.";
    const CONTENT_TYPES: &'static [&'static str] = &["application/json"];
}

impl<'a, K: BodyKind> ApiExtractor<'a> for RawBody<K> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(_registry: &mut Registry) {}

    fn request_meta() -> Option<MetaRequest> {
        let object = || {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                additional_properties: Some(Box::new(MetaSchemaRef::Inline(Box::new(
                    MetaSchema::ANY,
                )))),
                ..MetaSchema::new("object")
            }))
        };
        Some(MetaRequest {
            description: Some(K::DESCRIPTION),
            content: K::CONTENT_TYPES
                .iter()
                .map(|content_type| MetaMediaType {
                    content_type,
                    schema: object(),
                })
                .collect(),
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self {
            bytes: <Bytes as FromRequest>::from_request(request, body).await?,
            content_type: request.content_type().map(str::to_owned),
            kind: PhantomData,
        })
    }
}
