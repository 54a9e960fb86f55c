//! A real HTTP/1.1 receiver on 127.0.0.1 (keep-alive) for outbound deliveries: the one every
//! test suite and the harness use.
//!
//! **What it answers** is a [`Behaviour`], set per path (one path per configuration, e.g.
//! `/c/3`) or as the fallback: a fixed [`Reply`] (200 by default), a [`Script`] (these replies
//! in order, then that one), or any function of the [`Delivery`] (fail the first attempt of
//! every `webhook-id`, hang on every tenth, drop the connection for one path…). A reply is a
//! status, a status with `Retry-After`, a redirect, a hang, a dropped or a reset connection.
//! Routes can be changed while deliveries arrive, and a [`Hold`] keeps every answer back until
//! the test lets go (to stop a database between an attempt and its answer).
//!
//! **What it records** is chosen at start ([`Keep`]): always, per `webhook-id`, how many times
//! it arrived, when first and last, and how often it was answered 2xx; with
//! [`Keep::Arrivals`], every arrival in order with the answer it got and the connection it came
//! on, and when each connection closed, so that a fault run can tell which answers a sender
//! may never have read; with [`Keep::Requests`], also each request's headers and body, for
//! tests that check what was sent. When a path's [`Route`] has a signing secret, its Standard
//! Webhooks signature is checked with the worker's own signing code
//! ([`wirehook_core::signing`]); a bad one is counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use wirehook_core::signing::{SecretError, SigningKey};

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status at once.
    Status(u16),
    /// Answer with this status and `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Answer `302 Found` with this `Location` (which a sender must not follow).
    Redirect(String),
    /// Wait this long, then answer 200 (to run into the sender's timeout).
    Hang(Duration),
    /// Close the connection without answering (the sender sees a connection error).
    Drop,
    /// Reset the connection (TCP RST, `SO_LINGER` 0) without answering, as a receiver whose
    /// process died mid-request does.
    Reset,
}

/// One received request, as a [`Behaviour`] sees it.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The request path, e.g. `/c/3`.
    pub path: &'a str,
    /// The `webhook-id` header.
    pub webhook_id: Option<&'a str>,
    /// Whether the Standard Webhooks signature verified.
    pub signature: Signature,
    /// The raw body.
    pub body: &'a [u8],
    /// How many times this `webhook-id` has arrived, this request included.
    pub nth: u32,
}

/// Decides the answer to each request of a route.
pub trait Behaviour: Send + Sync + 'static {
    /// The answer to `delivery`.
    fn reply(&self, delivery: &Delivery<'_>) -> Reply;
}

impl Behaviour for Reply {
    fn reply(&self, _: &Delivery<'_>) -> Reply {
        self.clone()
    }
}

impl<F> Behaviour for F
where
    F: Fn(&Delivery<'_>) -> Reply + Send + Sync + 'static,
{
    fn reply(&self, delivery: &Delivery<'_>) -> Reply {
        self(delivery)
    }
}

/// Answers with its replies in order, whatever the request, then always with the last one
/// given: "500, 500, then 200" for one delivery's attempts.
pub struct Script {
    replies: Mutex<VecDeque<Reply>>,
    then: Reply,
}

impl Script {
    /// `replies` in order, then `then` for every request after them.
    pub fn new(replies: Vec<Reply>, then: Reply) -> Self {
        Self {
            replies: Mutex::new(replies.into()),
            then,
        }
    }
}

impl Behaviour for Script {
    fn reply(&self, _: &Delivery<'_>) -> Reply {
        lock(&self.replies)
            .pop_front()
            .unwrap_or_else(|| self.then.clone())
    }
}

/// Result of checking a request's Standard Webhooks signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// One of the `webhook-signature` values matches the route's key.
    Valid,
    /// The headers are there but no signature matches.
    Invalid,
    /// `webhook-id`, `webhook-timestamp` or `webhook-signature` is missing.
    Missing,
    /// The route has no key, so nothing was checked.
    NotChecked,
}

/// What one path does: its answer and, optionally, the secret its deliveries must be signed
/// with.
#[derive(Clone)]
pub struct Route {
    key: Option<SigningKey>,
    behaviour: Arc<dyn Behaviour>,
}

impl Route {
    /// Answers with `behaviour`, checks no signature.
    pub fn new(behaviour: impl Behaviour) -> Self {
        Self {
            key: None,
            behaviour: Arc::new(behaviour),
        }
    }

    /// Always answers 200.
    pub fn ok() -> Self {
        Self::new(Reply::Status(200))
    }

    /// Also checks signatures against `secret` (a configuration's secret, `whsec_…`).
    pub fn signed_with(mut self, secret: &str) -> Result<Self, SecretError> {
        self.key = Some(SigningKey::from_secret(secret)?);
        Ok(self)
    }
}

/// What the receiver keeps besides its per-`webhook-id` counts and totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing more: memory grows with distinct ids only, for long benchmarks.
    Counts,
    /// Every [`Arrival`] (without headers and body) and every connection close: for fault
    /// runs, which reconstruct what each sender could have read.
    Arrivals,
    /// Every [`Arrival`] with its headers and body: for tests that check what was sent.
    Requests,
}

/// What is known about one `webhook-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The path of its first arrival.
    pub path: String,
    /// How many times it arrived.
    pub count: u32,
    /// How many of those were answered 2xx at once.
    pub answered_ok: u32,
    /// When it first arrived (body read).
    pub first_at: Instant,
    /// When it last arrived.
    pub last_at: Instant,
}

/// Totals over everything received so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests received.
    pub requests: u64,
    /// Distinct `webhook-id`s.
    pub distinct: u64,
    /// Requests beyond the first of their `webhook-id` (`requests - without_id - distinct`).
    pub duplicates: u64,
    /// Requests whose signature did not verify or was missing on a route with a key.
    pub bad_signatures: u64,
    /// Requests without a `webhook-id`.
    pub without_id: u64,
    /// First request received.
    pub first_at: Option<Instant>,
    /// Last request received.
    pub last_at: Option<Instant>,
}

/// One request as the [`Journal`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The `webhook-id` header.
    pub webhook_id: Option<String>,
    /// The request path.
    pub path: String,
    /// What it was answered.
    pub reply: Reply,
    /// When its body had been read (before the answer).
    pub at: Instant,
    /// The connection it came on (numbered from 0 in accept order).
    pub connection: u64,
    /// Its headers, by lowercase name (empty unless the receiver keeps [`Keep::Requests`]).
    pub headers: BTreeMap<String, String>,
    /// Its body (empty unless the receiver keeps [`Keep::Requests`]).
    pub body: Bytes,
}

/// Every arrival and connection close (kept unless the receiver keeps only [`Keep::Counts`]).
#[derive(Debug, Clone, Default)]
pub struct Journal {
    /// Arrivals in the order they were answered.
    pub arrivals: Vec<Arrival>,
    /// When each closed connection closed (the sender went away, or the receiver dropped it).
    pub closed: HashMap<u64, Instant>,
}

#[derive(Default)]
struct Log {
    by_id: HashMap<String, Seen>,
    journal: Option<Journal>,
    requests: u64,
    bad_signatures: u64,
    without_id: u64,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
}

impl Log {
    fn new(keep: Keep) -> Self {
        Self {
            journal: (keep != Keep::Counts).then(Journal::default),
            ..Self::default()
        }
    }
}

struct Shared {
    keep: Keep,
    routes: RwLock<HashMap<String, Route>>,
    fallback: RwLock<Route>,
    log: Mutex<Log>,
    /// How many [`Hold`]s are alive; answers wait while it is above 0.
    holds: watch::Sender<u32>,
}

/// The running receiver; stops (and drops its connections) when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (a free port) that answers 200 on every path and keeps
    /// what `keep` says.
    pub async fn start(keep: Keep) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            keep,
            routes: RwLock::new(HashMap::new()),
            fallback: RwLock::new(Route::ok()),
            log: Mutex::new(Log::new(keep)),
            holds: watch::Sender::new(0),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// A receiver for tests: answers `replies` in order on every path, then `then`, and keeps
    /// every request ([`Keep::Requests`]).
    pub async fn scripted(replies: Vec<Reply>, then: Reply) -> std::io::Result<Self> {
        let receiver = Self::start(Keep::Requests).await?;
        receiver.set_fallback(Route::new(Script::new(replies, then)));
        Ok(receiver)
    }

    /// A receiver for tests that answers `reply` to everything.
    pub async fn always(reply: Reply) -> std::io::Result<Self> {
        Self::scripted(Vec::new(), reply).await
    }

    /// A receiver for tests that answers 200 to everything.
    pub async fn ok() -> std::io::Result<Self> {
        Self::always(Reply::Status(200)).await
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sets what `path` does (replacing its earlier route).
    pub fn set_route(&self, path: &str, route: Route) {
        write(&self.shared.routes).insert(path.to_owned(), route);
    }

    /// Sets what paths without a route of their own do.
    pub fn set_fallback(&self, route: Route) {
        *write(&self.shared.fallback) = route;
    }

    /// Keeps every answer back until the returned [`Hold`] (and any other) is dropped;
    /// requests are still read and recorded at once.
    pub fn hold(&self) -> Hold {
        self.shared.holds.send_modify(|n| *n += 1);
        Hold {
            shared: self.shared.clone(),
        }
    }

    /// Totals so far.
    pub fn summary(&self) -> Summary {
        let log = lock(&self.shared.log);
        let distinct = log.by_id.len() as u64;
        Summary {
            requests: log.requests,
            distinct,
            duplicates: log.requests - log.without_id - distinct,
            bad_signatures: log.bad_signatures,
            without_id: log.without_id,
            first_at: log.first_at,
            last_at: log.last_at,
        }
    }

    /// What is known about `webhook_id`.
    pub fn seen(&self, webhook_id: &str) -> Option<Seen> {
        lock(&self.shared.log).by_id.get(webhook_id).cloned()
    }

    /// Everything recorded, by `webhook-id`.
    pub fn snapshot(&self) -> HashMap<String, Seen> {
        lock(&self.shared.log).by_id.clone()
    }

    /// Forgets everything recorded (routes stay, and so does what it keeps).
    pub fn clear(&self) {
        *lock(&self.shared.log) = Log::new(self.shared.keep);
    }

    /// The journal so far (empty if the receiver keeps only [`Keep::Counts`]).
    pub fn journal(&self) -> Journal {
        lock(&self.shared.log).journal.clone().unwrap_or_default()
    }

    /// Every arrival so far, in order (empty if the receiver keeps only [`Keep::Counts`]).
    pub fn received(&self) -> Vec<Arrival> {
        lock(&self.shared.log)
            .journal
            .as_ref()
            .map(|journal| journal.arrivals.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `n` arrivals are in the journal (or `timeout` passes) and returns
    /// them all; the caller asserts on what it got.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Arrival> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `n` distinct ids arrived; false if `timeout` passed first.
    pub async fn wait_for_distinct(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if lock(&self.shared.log).by_id.len() as u64 >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

/// Keeps a [`Receiver`]'s answers back while it lives ([`Receiver::hold`]).
pub struct Hold {
    shared: Arc<Shared>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.shared.holds.send_modify(|n| *n -= 1);
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut next_connection = 0u64;
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: give connections a moment to close.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            id: next_connection,
            fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
        };
        next_connection += 1;
        let shared = shared.clone();
        connections.spawn(async move {
            let service = {
                let shared = shared.clone();
                service_fn(move |req| handle(req, shared.clone(), connection))
            };
            // A connection error ends only that connection (and `Reply::Drop` is one).
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Some(journal) = lock(&shared.log).journal.as_mut() {
                journal.closed.insert(connection.id, Instant::now());
            }
        });
    }
}

/// The connection a request came on: its number, and its socket for [`Reply::Reset`].
#[derive(Debug, Clone, Copy)]
struct Connection {
    id: u64,
    fd: std::os::fd::RawFd,
}

impl Connection {
    /// Makes closing the socket send RST instead of FIN (`SO_LINGER` on, 0 s).
    fn reset_on_close(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `fd` is the socket of the connection whose request is being handled; hyper
        // owns it and closes it only after this handler returns, so it is open here. The
        // option value is a valid `linger` of the size passed.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::from_ref(&linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// The error that makes hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("receiver dropped the connection on purpose")]
struct DropConnection;

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    connection: Connection,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = header("webhook-id");
    let timestamp = header("webhook-timestamp");
    let signatures = header("webhook-signature");
    let headers: BTreeMap<String, String> = if shared.keep == Keep::Requests {
        req.headers()
            .iter()
            .map(|(name, value)| {
                let value = value.to_str().unwrap_or_default();
                (name.as_str().to_owned(), value.to_owned())
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let route = read(&shared.routes)
        .get(&path)
        .cloned()
        .unwrap_or_else(|| read(&shared.fallback).clone());
    let signature = match (&route.key, &id, &timestamp, &signatures) {
        (None, ..) => Signature::NotChecked,
        (Some(key), Some(id), Some(ts), Some(sigs)) => verify(key, id, ts, sigs, &body),
        (Some(_), ..) => Signature::Missing,
    };
    let now = Instant::now();
    let nth = record(&shared.log, &path, id.as_deref(), signature, now);
    let reply = route.behaviour.reply(&Delivery {
        path: &path,
        webhook_id: id.as_deref(),
        signature,
        body: &body,
        nth,
    });
    if let Some(journal) = lock(&shared.log).journal.as_mut() {
        let body = if shared.keep == Keep::Requests {
            body.clone()
        } else {
            Bytes::new()
        };
        journal.arrivals.push(Arrival {
            webhook_id: id.clone(),
            path: path.clone(),
            reply: reply.clone(),
            at: now,
            connection: connection.id,
            headers,
            body,
        });
    }
    let at_once = matches!(reply, Reply::Status(_) | Reply::RetryAfter(..));
    // Fails only if the receiver is gone, and then nobody waits for the answer.
    let _ = shared.holds.subscribe().wait_for(|holds| *holds == 0).await;
    let (status, extra) = match reply {
        Reply::Status(code) => (code, None),
        Reply::RetryAfter(code, secs) => (code, Some((RETRY_AFTER, HeaderValue::from(secs)))),
        Reply::Redirect(location) => {
            let location = HeaderValue::try_from(location).map_err(|_| DropConnection)?;
            (302, Some((LOCATION, location)))
        }
        Reply::Hang(wait) => {
            tokio::time::sleep(wait).await;
            (200, None)
        }
        Reply::Drop => return Err(DropConnection),
        Reply::Reset => {
            connection.reset_on_close();
            return Err(DropConnection);
        }
    };
    if at_once
        && (200..300).contains(&status)
        && let Some(id) = &id
        && let Some(seen) = lock(&shared.log).by_id.get_mut(id)
    {
        seen.answered_ok += 1;
    }
    let body: &'static [u8] = if status < 300 { b"Received" } else { b"Nope" };
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Some((name, value)) = extra {
        headers.insert(name, value);
    }
    Ok(response)
}

/// Records one arrival and returns how many times its id has arrived.
fn record(
    log: &Mutex<Log>,
    path: &str,
    id: Option<&str>,
    signature: Signature,
    now: Instant,
) -> u32 {
    let mut log = lock(log);
    log.requests += 1;
    log.first_at.get_or_insert(now);
    log.last_at = Some(now);
    if matches!(signature, Signature::Invalid | Signature::Missing) {
        log.bad_signatures += 1;
    }
    let Some(id) = id else {
        log.without_id += 1;
        return 1;
    };
    let seen = log.by_id.entry(id.to_owned()).or_insert_with(|| Seen {
        path: path.to_owned(),
        count: 0,
        answered_ok: 0,
        first_at: now,
        last_at: now,
    });
    seen.count += 1;
    seen.last_at = now;
    seen.count
}

/// Checks `webhook-signature` (space-separated `v1,<base64>` values) against `key`.
fn verify(key: &SigningKey, id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> Signature {
    let Ok(timestamp) = timestamp.trim().parse::<i64>() else {
        return Signature::Invalid;
    };
    let expected = wirehook_core::signing::sign(std::slice::from_ref(key), id, timestamp, body);
    if signatures.split(' ').any(|sig| sig == expected) {
        Signature::Valid
    } else {
        Signature::Invalid
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    async fn post(
        receiver: &Receiver,
        path: &str,
        id: &str,
        signature: &str,
    ) -> reqwest::Result<u16> {
        let response = reqwest::Client::new()
            .post(receiver.url(path))
            .header("webhook-id", id)
            .header("webhook-timestamp", "1614265330")
            .header("webhook-signature", signature)
            .body(r#"{"test": 2432232314}"#)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    fn vector_signature() -> String {
        let key = SigningKey::from_secret(SECRET).expect("vector secret");
        wirehook_core::signing::sign(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
    }

    #[tokio::test]
    async fn a_signed_delivery_is_recorded_once_per_arrival_and_verified() {
        let receiver = Receiver::start(Keep::Counts).await.expect("receiver");
        receiver.set_route("/c/0", Route::ok().signed_with(SECRET).expect("secret"));
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let signature = vector_signature();

        assert_eq!(
            post(&receiver, "/c/0", id, &signature).await.expect("post"),
            200
        );
        assert_eq!(
            post(&receiver, "/c/0", id, &signature).await.expect("post"),
            200
        );
        assert_eq!(
            post(&receiver, "/c/0", "msg_other", &signature)
                .await
                .expect("post"),
            200
        );

        let summary = receiver.summary();
        assert_eq!(summary.requests, 3);
        assert_eq!(summary.distinct, 2);
        assert_eq!(summary.duplicates, 1);
        // The signature covers the id, so it does not verify for `msg_other`.
        assert_eq!(summary.bad_signatures, 1);
        let seen = receiver.seen(id).expect("seen");
        assert_eq!(
            (seen.count, seen.answered_ok, seen.path.as_str()),
            (2, 2, "/c/0")
        );
    }

    #[tokio::test]
    async fn a_behaviour_decides_the_answer_per_arrival() {
        let receiver = Receiver::start(Keep::Counts).await.expect("receiver");
        receiver.set_route(
            "/flaky",
            Route::new(|d: &Delivery<'_>| {
                if d.nth == 1 {
                    Reply::Status(503)
                } else {
                    Reply::Status(200)
                }
            }),
        );
        receiver.set_route("/gone", Route::new(Reply::Drop));

        assert_eq!(
            post(&receiver, "/flaky", "m1", "v1,x").await.expect("post"),
            503
        );
        assert_eq!(
            post(&receiver, "/flaky", "m1", "v1,x").await.expect("post"),
            200
        );
        assert!(post(&receiver, "/gone", "m2", "v1,x").await.is_err());
        assert_eq!(receiver.seen("m1").map(|s| s.answered_ok), Some(1));
        assert_eq!(
            receiver.seen("m2").map(|s| (s.count, s.answered_ok)),
            Some((1, 0))
        );
        // No key on these routes: nothing to verify, nothing counted as bad.
        assert_eq!(receiver.summary().bad_signatures, 0);
    }

    /// Sends one raw HTTP/1.1 request to `path` and reads until the connection ends.
    async fn raw_exchange(receiver: &Receiver, path: &str) -> std::io::Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(receiver.addr()).await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nwebhook-id: m-raw\r\n\
             connection: close\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn a_reset_route_resets_the_connection_instead_of_closing_it() {
        let receiver = Receiver::start(Keep::Counts).await.expect("receiver");
        receiver.set_route("/reset", Route::new(Reply::Reset));
        receiver.set_route("/drop", Route::new(Reply::Drop));

        let reset = raw_exchange(&receiver, "/reset").await;
        assert_eq!(
            reset.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset)
        );
        // Dropping closes cleanly: the sender reads the end of the stream, no answer.
        assert_eq!(
            raw_exchange(&receiver, "/drop").await.ok(),
            Some(Vec::new())
        );
    }

    #[tokio::test]
    async fn the_journal_keeps_each_arrival_with_its_answer_and_connection() {
        let receiver = Receiver::start(Keep::Arrivals).await.expect("receiver");
        receiver.set_route("/fail", Route::new(Reply::Status(500)));

        assert_eq!(
            post(&receiver, "/fail", "m1", "v1,x").await.expect("post"),
            500
        );
        assert_eq!(
            post(&receiver, "/ok", "m1", "v1,x").await.expect("post"),
            200
        );
        assert!(raw_exchange(&receiver, "/ok").await.is_ok());

        // The receiver notes the close just after the sender sees it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while receiver.journal().closed.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let journal = receiver.journal();
        let replies: Vec<(&str, &Reply)> = journal
            .arrivals
            .iter()
            .map(|a| (a.path.as_str(), &a.reply))
            .collect();
        assert_eq!(
            replies,
            vec![
                ("/fail", &Reply::Status(500)),
                ("/ok", &Reply::Status(200)),
                ("/ok", &Reply::Status(200)),
            ]
        );
        // The raw exchange came on a connection of its own, which is closed now.
        let raw = journal.arrivals[2].connection;
        assert_ne!(raw, journal.arrivals[0].connection);
        assert!(journal.closed.contains_key(&raw), "{:?}", journal.closed);
    }

    #[tokio::test]
    async fn a_script_answers_in_order_then_its_last_reply_and_keeps_each_request() {
        let receiver = Receiver::scripted(
            vec![Reply::Status(500), Reply::RetryAfter(429, 7)],
            Reply::Status(200),
        )
        .await
        .expect("receiver");
        let http = reqwest::Client::new();
        let mut answers = Vec::new();
        for n in 0..3 {
            let answer = http
                .post(receiver.url("/hooks"))
                .header("webhook-id", format!("m{n}"))
                .body(format!("body {n}"))
                .send()
                .await
                .expect("post");
            let retry_after = answer
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned());
            let status = answer.status().as_u16();
            answers.push((status, retry_after, answer.text().await.expect("body")));
        }
        assert_eq!(
            answers,
            vec![
                (500, None, "Nope".to_owned()),
                (429, Some("7".to_owned()), "Nope".to_owned()),
                (200, None, "Received".to_owned()),
            ]
        );
        let received = receiver.wait_for(3, Duration::from_secs(2)).await;
        let kept: Vec<(&str, &[u8])> = received
            .iter()
            .map(|a| (a.headers["webhook-id"].as_str(), &a.body[..]))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("m0", &b"body 0"[..]),
                ("m1", &b"body 1"[..]),
                ("m2", &b"body 2"[..])
            ]
        );
    }

    #[tokio::test]
    async fn a_redirect_answers_302_with_its_location() {
        let receiver = Receiver::always(Reply::Redirect("http://127.0.0.1:9/elsewhere".into()))
            .await
            .expect("receiver");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let answer = http
            .post(receiver.url("/hooks"))
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status().as_u16(), 302);
        assert_eq!(
            answer.headers().get("location").map(|v| v.as_bytes()),
            Some(&b"http://127.0.0.1:9/elsewhere"[..])
        );
    }

    #[tokio::test]
    async fn a_hold_records_requests_at_once_and_answers_them_once_dropped() {
        let receiver = Receiver::ok().await.expect("receiver");
        let hold = receiver.hold();
        let url = receiver.url("/hooks");
        let sent = tokio::spawn(async move {
            let answer = reqwest::Client::new().post(url).send().await?;
            Ok::<_, reqwest::Error>(answer.status().as_u16())
        });

        assert_eq!(receiver.wait_for(1, Duration::from_secs(5)).await.len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!sent.is_finished(), "answered while held");
        drop(hold);
        let status = tokio::time::timeout(Duration::from_secs(5), sent)
            .await
            .expect("answered once released")
            .expect("task");
        assert_eq!(status.expect("post"), 200);
    }
}
