//! The `Allow` header of 405 answers, which HTTP requires (RFC 9110 §15.5.6) and poem's router
//! does not set: the methods each route declares, read from the same OpenAPI declarations that
//! build the routes, so the two cannot disagree.

use std::sync::Arc;

use poem::http::header::ALLOW;
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, EndpointExt, IntoResponse, Response};
use poem_openapi::OpenApi;

/// The methods of every route of an API, by path template.
#[derive(Debug, Clone)]
pub struct AllowedMethods {
    routes: Vec<(Vec<Segment>, Vec<Method>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one segment.
    Param,
}

/// The order methods are listed in.
const ORDER: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

impl AllowedMethods {
    /// The routes `T` declares. A route with `GET` also answers `HEAD` (poem's router does).
    pub fn of<T: OpenApi>() -> Self {
        let mut routes: Vec<(Vec<Segment>, Vec<Method>)> = Vec::new();
        for path in T::meta().into_iter().flat_map(|api| api.paths) {
            let template = segments(&path.path)
                .map(|s| {
                    if s.starts_with('{') || s.starts_with(':') {
                        Segment::Param
                    } else {
                        Segment::Literal(s.to_owned())
                    }
                })
                .collect();
            let methods = path.operations.into_iter().map(|op| op.method);
            match routes.iter_mut().find(|(t, _)| *t == template) {
                Some((_, known)) => known.extend(methods),
                None => routes.push((template, methods.collect())),
            }
        }
        for (_, methods) in &mut routes {
            if methods.contains(&Method::GET) {
                methods.push(Method::HEAD);
            }
            methods.sort_by_key(|m| ORDER.iter().position(|o| o == m).unwrap_or(ORDER.len()));
            methods.dedup();
        }
        Self { routes }
    }

    /// The `Allow` value for a request to `path`, from the route that matches it most literally.
    pub fn for_path(&self, path: &str) -> Option<HeaderValue> {
        let parts: Vec<&str> = segments(path).collect();
        let (_, methods) = self
            .routes
            .iter()
            .filter(|(template, _)| matches(template, &parts))
            .max_by_key(|(template, _)| {
                template
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count()
            })?;
        let list: Vec<&str> = methods.iter().map(Method::as_str).collect();
        HeaderValue::from_str(&list.join(", ")).ok()
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(template: &[Segment], parts: &[&str]) -> bool {
    template.len() == parts.len()
        && template.iter().zip(parts).all(|(t, p)| match t {
            Segment::Literal(l) => l == p,
            Segment::Param => true,
        })
}

/// `ep` with an `Allow` header on its 405 answers. The answer stays an error, so the JSON error
/// mapping ([`crate::error::json_error`]) still shapes it and copies the header.
pub fn with_allow_header<E: Endpoint + 'static>(
    ep: E,
    allowed: AllowedMethods,
) -> impl Endpoint<Output = Response> {
    let allowed = Arc::new(allowed);
    ep.around(move |ep, req| {
        let allowed = allowed.clone();
        async move {
            let path = req.uri().path().to_owned();
            match ep.call(req).await {
                Err(err) if err.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    let mut answer = Response::builder()
                        .status(StatusCode::METHOD_NOT_ALLOWED)
                        .finish();
                    if let Some(methods) = allowed.for_path(&path) {
                        answer.headers_mut().insert(ALLOW, methods);
                    }
                    Err(poem::Error::from_response(answer))
                }
                other => other.map(IntoResponse::into_response),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use poem_openapi::OpenApi;
    use poem_openapi::param::Path;

    use super::AllowedMethods;

    struct Api;

    #[OpenApi]
    impl Api {
        #[oai(path = "/things", method = "get")]
        async fn list(&self) {}
        #[oai(path = "/things", method = "post")]
        async fn create(&self) {}
        #[oai(path = "/things/:id", method = "delete")]
        async fn delete(&self, _id: Path<i64>) {}
        #[oai(path = "/things/:id/retry", method = "post")]
        async fn retry(&self, _id: Path<i64>) {}
        #[oai(path = "/things/special", method = "put")]
        async fn special(&self) {}
    }

    fn allow(path: &str) -> Option<String> {
        AllowedMethods::of::<Api>()
            .for_path(path)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    #[test]
    fn a_route_allows_its_methods_and_head_beside_get() {
        assert_eq!(allow("/things").as_deref(), Some("GET, HEAD, POST"));
    }

    #[test]
    fn a_path_parameter_matches_any_one_segment() {
        assert_eq!(allow("/things/42").as_deref(), Some("DELETE"));
        assert_eq!(allow("/things/42/retry").as_deref(), Some("POST"));
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        assert_eq!(allow("/things/special").as_deref(), Some("PUT"));
    }

    #[test]
    fn an_unknown_path_has_no_allow_value() {
        assert_eq!(allow("/nothing"), None);
    }
}
