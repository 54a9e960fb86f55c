//! `/console/`: the operator console, a single-page app built from `console/` and embedded in
//! the binary, so an api is all there is to deploy and the console always matches its api.
//!
//! The assets are embedded at compile time from `console/dist` (`scripts/console.sh build`,
//! which `just dev`, `just test` and CI run before cargo). `debug-embed` makes debug builds
//! embed them too, so a debug binary serves what a release binary would instead of reading the
//! disk. A build without them (a Rust-only checkout) still compiles: `/console/` then says how
//! to build it.
//!
//! Every answer carries a strict Content-Security-Policy: the app runs no inline script and talks
//! only to this origin, so an injected string (a payload, a header value from a receiver) cannot
//! run or send the operator's token elsewhere.

use poem::endpoint::EmbeddedFileEndpoint;
use poem::http::{Method, StatusCode, header};
use poem::middleware::SetHeader;
use poem::{Endpoint, EndpointExt, Request, Response};

/// The built console (`console/dist`); empty when it was not built before the api.
#[derive(rust_embed::Embed)]
#[folder = "../console/dist"]
#[allow_missing = true]
struct Assets;

/// What the console may load and where it may connect: only this origin, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console endpoint, to nest at `/console`.
pub fn endpoint() -> impl Endpoint<Output = Response> {
    Console.with(
        SetHeader::new()
            .overriding(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .overriding(header::X_FRAME_OPTIONS, "DENY")
            .overriding(header::REFERRER_POLICY, "no-referrer")
            .overriding("cross-origin-opener-policy", "same-origin"),
    )
}

/// Whether the console's assets are in this binary.
pub fn is_built() -> bool {
    Assets::get("index.html").is_some()
}

/// Serves the embedded files; any other path without a file extension is one of the app's own
/// routes (`/console/events/42`) and gets `index.html`, so links and reloads work.
struct Console;

impl Endpoint for Console {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            // An error, like every other 405: the JSON error mapping shapes it and keeps Allow.
            return Err(poem::Error::from_response(
                Response::builder()
                    .status(StatusCode::METHOD_NOT_ALLOWED)
                    .header(header::ALLOW, "GET, HEAD")
                    .finish(),
            ));
        }
        let path = req.uri().path().trim_start_matches('/').to_owned();
        if path.is_empty() && !req.original_uri().path().ends_with('/') {
            // `/console` → `/console/`, so the app's relative asset URLs resolve.
            return Ok(Response::builder()
                .status(StatusCode::MOVED_PERMANENTLY)
                .header(header::LOCATION, "/console/")
                .finish());
        }
        if !is_built() {
            return Ok(not_built());
        }
        let (file, cache) = if !path.is_empty() && Assets::get(&path).is_some() {
            // Vite names everything under assets/ after its content hash.
            let cache = if path.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            (path, cache)
        } else if is_app_route(&path) {
            ("index.html".to_owned(), "no-cache")
        } else {
            return Err(StatusCode::NOT_FOUND.into());
        };
        let is_head = req.method() == Method::HEAD;
        let mut req = req;
        if is_head {
            // poem's embedded-file endpoint answers GET only; HEAD is GET without the body.
            req.set_method(Method::GET);
        }
        let mut resp = EmbeddedFileEndpoint::<Assets>::new(&file).call(req).await?;
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static(cache),
        );
        if is_head {
            resp.set_body(());
        }
        Ok(resp)
    }
}

/// A path the app routes itself: no file extension in its last segment.
fn is_app_route(path: &str) -> bool {
    !path.rsplit('/').next().unwrap_or_default().contains('.')
}

/// The page a binary built without the console shows at `/console/`.
fn not_built() -> Response {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>wirehook console not built</title></head><body>\
             <h1>The console is not built into this api</h1>\
             <p>This binary was compiled without the console's assets \
             (<code>console/dist</code>). Build them with <code>scripts/console.sh build</code> \
             (needs Node.js and npm; <code>just dev</code> and <code>just test</code> do it), \
             then build the api again. The REST API and <a href=\"/docs\">/docs</a> work \
             without it.</p></body></html>",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_routes_are_paths_without_a_file_extension() {
        for route in ["", "events", "events/42", "configs/new", "configs/7"] {
            assert!(is_app_route(route), "{route}");
        }
        for file in ["favicon.svg", "assets/index-abc.js", "robots.txt"] {
            assert!(!is_app_route(file), "{file}");
        }
    }
}
