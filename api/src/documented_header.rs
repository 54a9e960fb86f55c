//! Request headers a handler reads itself, declared in OpenAPI as optional string header
//! parameters.
//!
//! Provider signatures are checked against the headers exactly as the handler reads them from the
//! request. Extracting them as `Header<Option<String>>` instead would refuse a value that is not
//! visible ASCII with a 400 before the handler runs, so the refusal would not be recorded as a
//! `rejected` event. This extractor only documents the header: it always succeeds and holds
//! nothing.

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaParamIn, MetaSchemaRef};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

/// An optional header, documented under the argument's `#[oai(name = "...")]`.
#[derive(Debug, Clone, Copy)]
pub struct DocumentedHeader;

impl<'a> ApiExtractor<'a> for DocumentedHeader {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = false;

    type ParamType = ();
    type ParamRawType = ();

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(String::schema_ref())
    }

    async fn from_request(
        _request: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self)
    }
}
