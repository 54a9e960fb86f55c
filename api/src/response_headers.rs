//! Headers every api response carries: `X-Content-Type-Options: nosniff`, so no browser reads a
//! JSON body as HTML; `Cache-Control: no-store` unless the route chose its own caching (the
//! console's assets), so no cache keeps a response that carries a secret (a created
//! configuration's or a rotation's); and no `Server` header naming what runs here.

use poem::Response;
use poem::http::header;

/// Adds the headers to `response` (a route's own `Cache-Control` wins).
pub async fn apply(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    headers.remove(header::SERVER);
    response
}
