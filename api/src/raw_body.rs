//! A request body kept as the exact bytes received, for signature checks, and documented in
//! OpenAPI as the JSON or form body a provider sends.

use bytes::Bytes;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

/// The raw body of a provider webhook and its `Content-Type`.
///
/// Any content type is accepted here, so that every request can be audited; the handler decides
/// what it can read. The body size limit is the application's (413 above it).
#[derive(Debug, Clone)]
pub struct RawBody {
    /// The bytes exactly as received.
    pub bytes: Bytes,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
}

impl<'a> ApiExtractor<'a> for RawBody {
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
            description: Some(
                "The provider's event exactly as it sends it: JSON, or for SignalWire cXML \
                 callbacks a form-encoded body. The signature covers these exact bytes.",
            ),
            content: vec![
                MetaMediaType {
                    content_type: "application/json",
                    schema: object(),
                },
                MetaMediaType {
                    content_type: "application/x-www-form-urlencoded",
                    schema: object(),
                },
            ],
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
        })
    }
}
