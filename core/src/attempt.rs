//! One HTTP delivery attempt, touching no database.
//!
//! [`attempt`] signs and POSTs one message and describes what happened in an
//! [`AttemptOutcome`]; a receiver's fault (timeout, DNS, refused connection, 5xx, …) is an
//! outcome, never an `Err`. The caller records the outcome and schedules what comes next
//! from [`AttemptOutcome::verdict`] and [`AttemptOutcome::retry_after`].

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::http_client::{DeliveryClient, SendError, SsrfBlocked};
use crate::retry::parse_retry_after;
use crate::signing::{SigningKey, sign};

/// Bytes of the response body kept in an outcome; the rest is not read.
pub const RESPONSE_BODY_LIMIT: usize = 32 * 1024;

/// What replaces a secret header value in [`AttemptOutcome::request_headers`].
pub const REDACTED: &str = "[redacted]";

/// Headers wirehook sets itself: a configuration may not set them (the api refuses them), and
/// the engine skips any that reach it anyway.
pub const RESERVED_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Everything needed to send one message once.
#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    /// The configuration's target URL (http or https).
    pub url: String,
    /// The event's public message id, sent as `webhook-id`; the same on every attempt.
    pub msg_id: String,
    /// Unix seconds sent as `webhook-timestamp` and signed; take it at attempt time, since
    /// receivers reject timestamps more than 5 minutes from their clock.
    pub timestamp: i64,
    /// The exact JSON body to send and sign (`Vec<u8>` converts with `.into()`).
    pub body: Bytes,
    /// Signing keys, new first during a rotation.
    pub keys: Vec<SigningKey>,
    /// The configuration's custom headers.
    pub headers: BTreeMap<String, String>,
}

/// What one attempt did and got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The response status, if a response arrived.
    pub status_code: Option<u16>,
    /// Response headers, lowercase names; repeated headers joined with `, `.
    pub response_headers: BTreeMap<String, String>,
    /// The first [`RESPONSE_BODY_LIMIT`] bytes of the response body, as lossy UTF-8.
    pub response_body: String,
    /// Whether the response body was longer than what was kept.
    pub truncated: bool,
    /// Time from sending to the end of reading the response.
    pub duration: Duration,
    /// Why the attempt did not deliver, or how reading a 2xx response failed.
    pub error: Option<AttemptError>,
    /// The receiver's `Retry-After`, parsed for 429 and 503 only.
    pub retry_after: Option<Duration>,
    /// The headers sent (lowercase names), with the signature and credentials redacted.
    pub request_headers: BTreeMap<String, String>,
}

/// Category of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptErrorKind {
    /// The attempt took longer than the client's timeout.
    Timeout,
    /// No connection could be made (refused, reset, unreachable, TLS handshake).
    Connect,
    /// The target's host name could not be resolved.
    Dns,
    /// The SSRF guard refused the target's addresses; nothing was sent.
    SsrfBlocked,
    /// The target URL cannot be used (unparsable, not http(s), no host).
    InvalidUrl,
    /// The receiver answered with a status other than 2xx.
    HttpStatus,
    /// The response body could not be read.
    Body,
    /// Anything else, including custom headers that are not valid HTTP.
    Other,
}

impl AttemptErrorKind {
    /// The stable snake_case name stored with the attempt.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::SsrfBlocked => "ssrf_blocked",
            Self::InvalidUrl => "invalid_url",
            Self::HttpStatus => "http_status",
            Self::Body => "body",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for AttemptErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed: a kind to act on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AttemptError {
    /// The category.
    pub kind: AttemptErrorKind,
    /// A human-readable description, without secrets.
    pub message: String,
}

impl AttemptError {
    fn new(kind: AttemptErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// What the delivery engine does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver answered 2xx: the event is delivered.
    Delivered,
    /// Anything else but 410: try again if attempts remain.
    Retry,
    /// The receiver answered 410 Gone: disable the configuration, fail the event.
    Gone,
}

impl AttemptOutcome {
    /// Delivered on 2xx (even if reading the body then failed), Gone on 410, else Retry.
    pub fn verdict(&self) -> Verdict {
        match self.status_code {
            Some(200..=299) => Verdict::Delivered,
            Some(410) => Verdict::Gone,
            _ => Verdict::Retry,
        }
    }

    /// An attempt that could not be sent at all (e.g. the stored secret is unusable).
    pub fn failed_before_sending(message: String) -> Self {
        Self::failed(
            AttemptError {
                kind: AttemptErrorKind::Other,
                message,
            },
            BTreeMap::new(),
        )
    }

    fn failed(error: AttemptError, request_headers: BTreeMap<String, String>) -> Self {
        Self {
            status_code: None,
            response_headers: BTreeMap::new(),
            response_body: String::new(),
            truncated: false,
            duration: Duration::ZERO,
            error: Some(error),
            retry_after: None,
            request_headers,
        }
    }
}

/// Signs and POSTs `req` once with `client`, and reports what happened; never fails.
pub async fn attempt(client: &DeliveryClient, req: &DeliveryRequest) -> AttemptOutcome {
    let started = Instant::now();
    let headers = match request_headers(client, req) {
        Ok(headers) => headers,
        Err(error) => return AttemptOutcome::failed(error, BTreeMap::new()),
    };
    let recorded = record_headers(&headers);
    let url = match target_url(&req.url) {
        Ok(url) => url,
        Err(error) => return AttemptOutcome::failed(error, recorded),
    };

    let mut request = reqwest::Request::new(Method::POST, url);
    *request.headers_mut() = headers;
    *request.body_mut() = Some(req.body.clone().into());

    let mut outcome = match client.send(request).await {
        Ok(response) => read_response(response).await,
        Err(err) => AttemptOutcome::failed(classify_send_error(&err), BTreeMap::new()),
    };
    outcome.request_headers = recorded;
    outcome.duration = started.elapsed();
    outcome
}

/// The headers of one attempt: custom ones first, then ours, which win.
fn request_headers(
    client: &DeliveryClient,
    req: &DeliveryRequest,
) -> Result<HeaderMap, AttemptError> {
    let invalid = |what: &str| AttemptError::new(AttemptErrorKind::Other, what.to_owned());
    let mut headers = HeaderMap::new();

    let user_agent = HeaderValue::from_str(&client.config().user_agent)
        .map_err(|_| invalid("the configured user-agent is not a valid header value"))?;
    headers.insert(header::USER_AGENT, user_agent);

    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(&format!("custom header name {name:?} is not valid HTTP")))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            tracing::warn!(header = %name, "skipping a reserved custom header");
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            invalid(&format!(
                "custom header {name} has a value that is not valid HTTP"
            ))
        })?;
        headers.insert(name, value);
    }

    let signature = sign(&req.keys, &req.msg_id, req.timestamp, &req.body);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "webhook-id",
        HeaderValue::from_str(&req.msg_id)
            .map_err(|_| invalid("the message id is not a valid header value"))?,
    );
    headers.insert("webhook-timestamp", HeaderValue::from(req.timestamp));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&signature)
            .map_err(|_| invalid("the signature is not a valid header value"))?,
    );
    Ok(headers)
}

/// The sent headers as recorded: the signature and likely credentials redacted.
fn record_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut recorded = header_map(headers);
    for (name, value) in recorded.iter_mut() {
        if is_secret_header(name) {
            *value = REDACTED.to_owned();
        }
    }
    recorded
}

/// Whether a header's value should not be stored: the signature, or a likely credential.
fn is_secret_header(name: &str) -> bool {
    const EXACT: [&str; 4] = [
        "webhook-signature",
        "authorization",
        "proxy-authorization",
        "cookie",
    ];
    const PARTS: [&str; 6] = ["token", "secret", "password", "api-key", "apikey", "auth"];
    EXACT.contains(&name) || PARTS.iter().any(|part| name.contains(part))
}

/// Parses the target URL; only http and https with a host are deliverable.
fn target_url(raw: &str) -> Result<Url, AttemptError> {
    let invalid = |message: String| AttemptError::new(AttemptErrorKind::InvalidUrl, message);
    let url = Url::parse(raw).map_err(|err| invalid(format!("invalid target URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "unsupported URL scheme {:?}; http or https required",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(invalid("the target URL has no host".to_owned()));
    }
    Ok(url)
}

/// Turns a response into an outcome, reading at most [`RESPONSE_BODY_LIMIT`] bytes of body.
async fn read_response(mut response: reqwest::Response) -> AttemptOutcome {
    let status = response.status();
    let response_headers = header_map(response.headers());
    let retry_after = if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, chrono::Utc::now()))
    } else {
        None
    };

    let mut body = Vec::new();
    let mut truncated = false;
    let mut body_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_BODY_LIMIT - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(err) => {
                body_error = Some(classify_reqwest_error(&err, AttemptErrorKind::Body));
                break;
            }
        }
    }

    let error = if status.is_success() {
        body_error
    } else {
        let mut message = format!("the receiver answered {status}");
        if let Some(body_error) = body_error {
            message.push_str(&format!(" (then reading the body failed: {body_error})"));
        }
        Some(AttemptError::new(AttemptErrorKind::HttpStatus, message))
    };

    AttemptOutcome {
        status_code: Some(status.as_u16()),
        response_headers,
        response_body: lossy_utf8(&body, truncated),
        truncated,
        duration: Duration::ZERO,
        error,
        retry_after,
        request_headers: BTreeMap::new(),
    }
}

/// Headers as a map of lowercase names to values (lossy UTF-8), repeats joined with `, `.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

/// Lossy UTF-8; a character cut in half by truncation is dropped rather than replaced.
fn lossy_utf8(bytes: &[u8], truncated: bool) -> String {
    let mut bytes = bytes;
    if truncated
        && let Err(err) = std::str::from_utf8(bytes)
        && err.error_len().is_none()
    {
        bytes = &bytes[..err.valid_up_to()];
    }
    String::from_utf8_lossy(bytes).into_owned()
}

fn classify_send_error(err: &SendError) -> AttemptError {
    match err {
        SendError::Blocked(blocked) => {
            AttemptError::new(AttemptErrorKind::SsrfBlocked, blocked.to_string())
        }
        SendError::Http(err) => classify_reqwest_error(err, AttemptErrorKind::Other),
    }
}

/// Classifies by error types, never by message text; `fallback` when nothing matches.
fn classify_reqwest_error(err: &reqwest::Error, fallback: AttemptErrorKind) -> AttemptError {
    if let Some(blocked) = find_source::<SsrfBlocked>(err) {
        return AttemptError::new(AttemptErrorKind::SsrfBlocked, blocked.to_string());
    }
    let kind = if err.is_timeout() {
        AttemptErrorKind::Timeout
    } else if err.is_dns() {
        AttemptErrorKind::Dns
    } else if err.is_connect() {
        AttemptErrorKind::Connect
    } else if err.is_body() || err.is_decode() {
        AttemptErrorKind::Body
    } else {
        fallback
    };
    AttemptError::new(kind, describe(err))
}

/// The first error of type `E` in `err`'s source chain.
fn find_source<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// The causes of a reqwest error joined with `: `, without reqwest's own line (which
/// repeats the URL, possibly with credentials in its query).
fn describe(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = err.source();
    while let Some(cause) = current {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = cause.source();
    }
    if parts.is_empty() {
        let text = err.to_string();
        match err.url() {
            Some(url) => text.replace(&format!(" ({url})"), ""),
            None => text,
        }
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use standardwebhooks::Webhook;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::*;
    use crate::http_client::ClientConfig;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] =
        br#"{"type":"call.completed","timestamp":"2024-01-01T00:00:00Z","data":{"callId":"c1"}}"#;

    /// A request as a receiver saw it.
    #[derive(Debug)]
    struct Received {
        request_line: String,
        headers: BTreeMap<String, String>,
        body: Vec<u8>,
    }

    /// A hand-written HTTP/1.1 receiver on 127.0.0.1 that answers every request the same.
    struct Receiver {
        addr: SocketAddr,
        received: mpsc::UnboundedReceiver<Received>,
    }

    impl Receiver {
        async fn start(response: Vec<u8>, delay: Duration) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, received) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let tx = tx.clone();
                    let response = response.clone();
                    tokio::spawn(async move {
                        if let Some(request) = read_request(&mut stream).await {
                            let _ = tx.send(request);
                        }
                        tokio::time::sleep(delay).await;
                        let _ = stream.write_all(&response).await;
                        let _ = stream.shutdown().await;
                    });
                }
            });
            Self { addr, received }
        }

        async fn answering(response: Vec<u8>) -> Self {
            Self::start(response, Duration::ZERO).await
        }

        fn url(&self) -> String {
            format!("http://{}/hooks?x=1", self.addr)
        }

        async fn request(&mut self) -> Received {
            tokio::time::timeout(Duration::from_secs(5), self.received.recv())
                .await
                .unwrap()
                .unwrap()
        }
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Received> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?.to_owned();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Received {
            request_line,
            headers,
            body,
        })
    }

    fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status}\r\n");
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ));
        let mut out = out.into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn client(allow_private_targets: bool, timeout: Duration) -> DeliveryClient {
        DeliveryClient::new(ClientConfig {
            timeout,
            allow_private_targets,
            user_agent: "wirehook/0.1.0".to_owned(),
        })
        .unwrap()
    }

    fn open_client() -> DeliveryClient {
        client(true, Duration::from_secs(5))
    }

    fn guarded_client() -> DeliveryClient {
        client(false, Duration::from_secs(5))
    }

    fn delivery(url: String) -> DeliveryRequest {
        DeliveryRequest {
            url,
            msg_id: "msg_2bX3yQ".to_owned(),
            timestamp: chrono::Utc::now().timestamp(),
            body: Bytes::from_static(BODY),
            keys: vec![SigningKey::from_secret(SECRET).unwrap()],
            headers: BTreeMap::new(),
        }
    }

    async fn no_connection_arrives(listener: &TcpListener) -> bool {
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err()
    }

    async fn free_port_listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    fn as_header_map(headers: &BTreeMap<String, String>) -> HeaderMap {
        headers
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn ok_response_is_delivered() {
        let receiver = Receiver::answering(response("200 OK", &[], b"ok")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.verdict(), Verdict::Delivered);
        assert_eq!(outcome.status_code, Some(200));
        assert_eq!(outcome.error, None);
        assert_eq!(outcome.response_body, "ok");
        assert!(!outcome.truncated);
    }

    #[tokio::test]
    async fn any_2xx_is_delivered() {
        let receiver = Receiver::answering(response("204 No Content", &[], b"")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.verdict(), Verdict::Delivered);
    }

    #[tokio::test]
    async fn request_is_a_json_post_with_standard_webhooks_headers() {
        let mut receiver = Receiver::answering(response("200 OK", &[], b"")).await;
        let req = delivery(receiver.url());
        attempt(&open_client(), &req).await;

        let seen = receiver.request().await;
        assert_eq!(seen.request_line, "POST /hooks?x=1 HTTP/1.1");
        assert_eq!(seen.headers["content-type"], "application/json");
        assert_eq!(seen.headers["user-agent"], "wirehook/0.1.0");
        assert_eq!(seen.headers["webhook-id"], "msg_2bX3yQ");
        assert_eq!(seen.headers["webhook-timestamp"], req.timestamp.to_string());
        assert_eq!(seen.body, BODY);
    }

    #[tokio::test]
    async fn receiver_verifies_the_signature_with_a_standard_webhooks_library() {
        let mut receiver = Receiver::answering(response("200 OK", &[], b"")).await;
        attempt(&open_client(), &delivery(receiver.url())).await;

        let seen = receiver.request().await;
        Webhook::new(SECRET)
            .unwrap()
            .verify(&seen.body, &as_header_map(&seen.headers))
            .unwrap();
    }

    #[tokio::test]
    async fn custom_headers_are_sent() {
        let mut receiver = Receiver::answering(response("200 OK", &[], b"")).await;
        let mut req = delivery(receiver.url());
        req.headers.insert("X-Tenant".to_owned(), "acme".to_owned());
        attempt(&open_client(), &req).await;

        assert_eq!(receiver.request().await.headers["x-tenant"], "acme");
    }

    #[tokio::test]
    async fn custom_headers_cannot_replace_the_signing_headers() {
        let mut receiver = Receiver::answering(response("200 OK", &[], b"")).await;
        let mut req = delivery(receiver.url());
        for name in ["webhook-id", "webhook-signature", "content-type", "host"] {
            req.headers.insert(name.to_owned(), "forged".to_owned());
        }
        attempt(&open_client(), &req).await;

        let seen = receiver.request().await;
        assert_eq!(seen.headers["webhook-id"], "msg_2bX3yQ");
        assert_eq!(seen.headers["content-type"], "application/json");
        assert_eq!(seen.headers["host"], receiver.addr.to_string());
        assert!(seen.headers["webhook-signature"].starts_with("v1,"));
    }

    #[tokio::test]
    async fn invalid_custom_header_fails_without_sending() {
        let (listener, addr) = free_port_listener().await;
        let mut req = delivery(format!("http://{addr}/"));
        req.headers.insert("bad header".to_owned(), "x".to_owned());
        let outcome = attempt(&open_client(), &req).await;

        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::Other);
        assert!(no_connection_arrives(&listener).await);
    }

    #[tokio::test]
    async fn recorded_request_headers_redact_the_signature_and_credentials() {
        let receiver = Receiver::answering(response("200 OK", &[], b"")).await;
        let mut req = delivery(receiver.url());
        req.headers
            .insert("Authorization".to_owned(), "Bearer abc".to_owned());
        req.headers.insert("X-Tenant".to_owned(), "acme".to_owned());
        let outcome = attempt(&open_client(), &req).await;

        let recorded = &outcome.request_headers;
        assert_eq!(recorded["webhook-signature"], REDACTED);
        assert_eq!(recorded["authorization"], REDACTED);
        assert_eq!(recorded["x-tenant"], "acme");
        assert_eq!(recorded["webhook-id"], "msg_2bX3yQ");
        assert_eq!(recorded["content-type"], "application/json");
        assert_eq!(recorded["user-agent"], "wirehook/0.1.0");
    }

    #[tokio::test]
    async fn response_headers_are_recorded() {
        let receiver =
            Receiver::answering(response("200 OK", &[("X-Request-Id", "r-1")], b"")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.response_headers["x-request-id"], "r-1");
    }

    #[tokio::test]
    async fn server_error_is_retried() {
        let receiver =
            Receiver::answering(response("500 Internal Server Error", &[], b"boom")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.status_code, Some(500));
        assert_eq!(outcome.response_body, "boom");
        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::HttpStatus);
    }

    #[tokio::test]
    async fn client_error_other_than_410_is_retried() {
        let receiver = Receiver::answering(response("404 Not Found", &[], b"")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.verdict(), Verdict::Retry);
    }

    #[tokio::test]
    async fn gone_ends_the_delivery() {
        let receiver = Receiver::answering(response("410 Gone", &[], b"")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.verdict(), Verdict::Gone);
        assert_eq!(outcome.status_code, Some(410));
    }

    #[tokio::test]
    async fn too_many_requests_carries_the_parsed_retry_after() {
        let receiver = Receiver::answering(response(
            "429 Too Many Requests",
            &[("Retry-After", "120")],
            b"",
        ))
        .await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.retry_after, Some(Duration::from_secs(120)));
    }

    #[tokio::test]
    async fn service_unavailable_carries_the_parsed_retry_after() {
        let receiver = Receiver::answering(response(
            "503 Service Unavailable",
            &[("Retry-After", "30")],
            b"",
        ))
        .await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.retry_after, Some(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn retry_after_is_ignored_on_other_statuses() {
        let receiver = Receiver::answering(response(
            "500 Internal Server Error",
            &[("Retry-After", "120")],
            b"",
        ))
        .await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.retry_after, None);
    }

    #[tokio::test]
    async fn slow_receiver_times_out() {
        let receiver = Receiver::start(response("200 OK", &[], b""), Duration::from_secs(3)).await;
        let client = client(true, Duration::from_millis(300));
        let outcome = attempt(&client, &delivery(receiver.url())).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.status_code, None);
        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::Timeout);
        assert!(outcome.duration < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        let (listener, addr) = free_port_listener().await;
        drop(listener);
        let outcome = attempt(&open_client(), &delivery(format!("http://{addr}/"))).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::Connect);
    }

    /// A receiver that reads the whole request, writes `partial` (maybe nothing) and then
    /// resets the connection (RST), as a receiver process dying mid-request does.
    async fn resetting_receiver(partial: &'static [u8]) -> SocketAddr {
        let (listener, addr) = free_port_listener().await;
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = read_request(&mut stream).await;
                let _ = stream.write_all(partial).await;
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_connection_reset_after_the_request_was_sent_is_retried_not_delivered() {
        let addr = resetting_receiver(b"").await;
        let outcome = attempt(&open_client(), &delivery(format!("http://{addr}/"))).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.status_code, None);
        assert!(outcome.error.is_some());
    }

    #[tokio::test]
    async fn a_status_line_cut_off_by_a_reset_is_retried_not_delivered() {
        let addr = resetting_receiver(b"HTTP/1.1 200 O").await;
        let outcome = attempt(&open_client(), &delivery(format!("http://{addr}/"))).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.status_code, None);
    }

    #[tokio::test]
    async fn unresolvable_host_is_a_dns_error() {
        let outcome = attempt(
            &open_client(),
            &delivery("http://wirehook-test.invalid/".to_owned()),
        )
        .await;
        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::Dns);
    }

    #[tokio::test]
    async fn large_response_body_is_truncated_at_32_kib() {
        let big = vec![b'a'; 100 * 1024];
        let receiver = Receiver::answering(response("200 OK", &[], &big)).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;

        assert_eq!(outcome.verdict(), Verdict::Delivered);
        assert_eq!(outcome.response_body.len(), RESPONSE_BODY_LIMIT);
        assert!(outcome.truncated);
    }

    #[tokio::test]
    async fn body_of_exactly_32_kib_is_not_truncated() {
        let body = vec![b'a'; RESPONSE_BODY_LIMIT];
        let receiver = Receiver::answering(response("200 OK", &[], &body)).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;

        assert_eq!(outcome.response_body.len(), RESPONSE_BODY_LIMIT);
        assert!(!outcome.truncated);
    }

    #[tokio::test]
    async fn invalid_utf8_in_the_body_is_replaced() {
        let receiver = Receiver::answering(response("200 OK", &[], b"ok\xff")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;
        assert_eq!(outcome.response_body, "ok\u{fffd}");
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let (elsewhere, elsewhere_addr) = free_port_listener().await;
        let location = format!("http://{elsewhere_addr}/");
        let receiver =
            Receiver::answering(response("302 Found", &[("Location", &location)], b"")).await;
        let outcome = attempt(&open_client(), &delivery(receiver.url())).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.status_code, Some(302));
        assert!(no_connection_arrives(&elsewhere).await);
    }

    #[tokio::test]
    async fn private_ip_literal_is_blocked_without_connecting() {
        let (listener, addr) = free_port_listener().await;
        let outcome = attempt(&guarded_client(), &delivery(format!("http://{addr}/"))).await;

        assert_eq!(outcome.verdict(), Verdict::Retry);
        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::SsrfBlocked);
        assert!(no_connection_arrives(&listener).await);
    }

    #[tokio::test]
    async fn name_resolving_to_loopback_is_blocked_without_connecting() {
        let (listener, addr) = free_port_listener().await;
        let url = format!("http://localhost:{}/", addr.port());
        let outcome = attempt(&guarded_client(), &delivery(url)).await;

        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::SsrfBlocked);
        assert!(no_connection_arrives(&listener).await);
    }

    #[tokio::test]
    async fn unparsable_url_is_invalid() {
        let outcome = attempt(&open_client(), &delivery("not a url".to_owned())).await;
        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::InvalidUrl);
    }

    #[tokio::test]
    async fn non_http_scheme_is_invalid() {
        let outcome = attempt(&open_client(), &delivery("ftp://example.com/".to_owned())).await;
        assert_eq!(outcome.error.unwrap().kind, AttemptErrorKind::InvalidUrl);
    }

    #[test]
    fn error_kinds_have_stable_snake_case_names() {
        use AttemptErrorKind::*;
        let names: Vec<_> = [
            Timeout,
            Connect,
            Dns,
            SsrfBlocked,
            InvalidUrl,
            HttpStatus,
            Body,
            Other,
        ]
        .map(AttemptErrorKind::as_str)
        .to_vec();
        assert_eq!(
            names,
            [
                "timeout",
                "connect",
                "dns",
                "ssrf_blocked",
                "invalid_url",
                "http_status",
                "body",
                "other"
            ]
        );
    }

    #[test]
    fn truncation_drops_a_split_character() {
        let text = "aé".as_bytes(); // 'é' is two bytes
        assert_eq!(lossy_utf8(&text[..2], true), "a");
    }

    #[test]
    fn secret_like_header_names_are_redacted() {
        for name in ["x-api-key", "x-auth-token", "x-webhook-secret", "cookie"] {
            assert!(is_secret_header(name), "{name}");
        }
        assert!(!is_secret_header("x-tenant"));
    }

    #[test]
    fn verdict_of_a_failed_attempt_is_retry() {
        let outcome = AttemptOutcome::failed(
            AttemptError::new(AttemptErrorKind::Connect, "refused"),
            BTreeMap::new(),
        );
        assert_eq!(outcome.verdict(), Verdict::Retry);
    }
}
