//! Provider requests signed as the provider signs them, and load generators: [`closed_loop`]
//! (N connections, each sending its next request when the last is answered), [`paced`]
//! (requests started at a fixed rate, whatever the answers), and their counterparts on a fixed
//! set of hand-driven connections, which tell the generator's own lag from the server's
//! latency ([`paced_on_wires`], [`closed_loop_on_wires`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::wire::{self, Answer, Wire, WireError};

/// Path of SignalWire's inbound endpoint.
pub const SIGNALWIRE_PATH: &str = "/api/webhooks/signalwire";

/// Signs and sends SignalWire JSON webhooks to one api.
#[derive(Clone)]
pub struct SignalWire {
    key: Arc<str>,
    /// Where requests go (`http://127.0.0.1:port`).
    target: Arc<str>,
    /// The api's `PUBLIC_BASE_URL`, which the signature covers.
    public_base_url: Arc<str>,
    http: reqwest::Client,
}

impl SignalWire {
    /// A sender to the api at `target` (its `PUBLIC_BASE_URL` is `public_base_url`), signing
    /// with `SIGNALWIRE_SIGNING_KEY` = `key`, over a pool of keep-alive connections.
    pub fn new(target: &str, public_base_url: &str, key: &str, http: reqwest::Client) -> Self {
        Self {
            key: key.into(),
            target: target.trim_end_matches('/').into(),
            public_base_url: public_base_url.trim_end_matches('/').into(),
            http,
        }
    }

    /// Posts `body` to the SignalWire endpoint, signed (`X-SignalWire-Signature`, HMAC-SHA1 of
    /// public URL + body); returns the status and JSON answer.
    pub async fn post(&self, body: Vec<u8>) -> Result<(u16, Value), reqwest::Error> {
        let response = self.send(body).await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

impl SignalWire {
    /// Posts `body` signed, as [`post`](Self::post) does, and returns the response unread.
    pub async fn send(&self, body: Vec<u8>) -> Result<reqwest::Response, reqwest::Error> {
        let url = format!("{}{SIGNALWIRE_PATH}", self.public_base_url);
        let signature =
            wirehook_api::inbound::signalwire::sign_json(self.key.as_bytes(), &url, &body);
        self.http
            .post(format!("{}{SIGNALWIRE_PATH}", self.target))
            .header("content-type", "application/json")
            .header("X-SignalWire-Signature", signature)
            .body(body)
            .send()
            .await
    }
}

impl SignalWire {
    /// `body` signed as [`send`](Self::send) signs it, as a request for a [`Wire`] to the
    /// target (origin-form URI, `Host` of the target).
    pub fn wire_request(&self, body: Vec<u8>) -> wire::Request {
        let url = format!("{}{SIGNALWIRE_PATH}", self.public_base_url);
        let signature =
            wirehook_api::inbound::signalwire::sign_json(self.key.as_bytes(), &url, &body);
        let host = self
            .target
            .split_once("://")
            .map_or(&*self.target, |(_, host)| host);
        let mut request = hyper::Request::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = hyper::Uri::from_static(SIGNALWIRE_PATH);
        let headers = request.headers_mut();
        for (name, value) in [
            ("host", host),
            ("content-type", "application/json"),
            ("x-signalwire-signature", signature.as_str()),
        ] {
            if let Ok(value) = hyper::header::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        request
    }
}

/// A SignalWire `call.completed` webhook for `call_id` in `campaign` (the contract's example
/// shape).
pub fn signalwire_call_completed(call_id: &str, campaign: &str) -> Vec<u8> {
    json!({
        "event_type": "call.completed",
        "timestamp": "2026-12-01T15:00:00Z",
        "call_id": call_id,
        "direction": "outbound",
        "from": "+18005551234",
        "to": "+18005557890",
        "state": "completed",
        "duration": 42,
        "metadata": {"campaignId": campaign, "contactId": 42}
    })
    .to_string()
    .into_bytes()
}

/// A keep-alive HTTP/1.1 client for load generation: up to `connections` idle connections
/// kept per host, `timeout` per request.
pub fn http_client(connections: usize, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .http1_only()
        .timeout(timeout)
        .build()
}

/// One request of a load run.
#[derive(Debug, Clone)]
pub struct Sample<T> {
    /// Its index (0, 1, …) in the order requests were started.
    pub index: u64,
    /// When the generator meant to send it; before `started_at` by the time it waited for a
    /// connection (the generator's own lag, not the server's).
    pub due: Instant,
    /// When it was started (for the wire generators: written on an open connection).
    pub started_at: Instant,
    /// When its answer (or error) came.
    pub answered_at: Instant,
    /// What the request function returned.
    pub outcome: Result<T, String>,
}

impl<T> Sample<T> {
    /// Time from start to answer.
    pub fn latency(&self) -> Duration {
        self.answered_at - self.started_at
    }

    /// Time from due to start: how long the request waited in the generator.
    pub fn lag(&self) -> Duration {
        self.started_at - self.due
    }
}

/// Every request of a load run.
#[derive(Debug, Clone)]
pub struct Run<T> {
    /// The requests, in no particular order.
    pub samples: Vec<Sample<T>>,
    /// From the first start to the last answer.
    pub elapsed: Duration,
}

impl<T> Run<T> {
    /// Requests whose outcome is `Ok`.
    pub fn ok(&self) -> impl Iterator<Item = &Sample<T>> {
        self.samples.iter().filter(|s| s.outcome.is_ok())
    }

    /// Requests whose outcome is `Err`.
    pub fn errors(&self) -> impl Iterator<Item = &Sample<T>> {
        self.samples.iter().filter(|s| s.outcome.is_err())
    }

    /// Latencies of the successful requests.
    pub fn ok_latencies(&self) -> Vec<Duration> {
        self.ok().map(Sample::latency).collect()
    }

    /// The first few distinct error messages.
    pub fn error_examples(&self, max: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for sample in self.errors() {
            if let Err(message) = &sample.outcome
                && !out.contains(message)
            {
                out.push(message.clone());
                if out.len() == max {
                    break;
                }
            }
        }
        out
    }
}

/// Runs `request(i)` from `connections` concurrent loops, each starting its next request when
/// the previous one is answered, until `duration` has passed (requests in flight then finish).
pub async fn closed_loop<T, F, Fut>(connections: usize, duration: Duration, request: F) -> Run<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for _ in 0..connections {
        let (request, next) = (request.clone(), next.clone());
        loops.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let started_at = Instant::now();
                let outcome = request(index).await;
                samples.push(Sample {
                    index,
                    due: started_at,
                    started_at,
                    answered_at: Instant::now(),
                    outcome,
                });
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = loops.join_next().await {
        if let Ok(mut part) = done {
            samples.append(&mut part);
        }
    }
    finish(start, samples)
}

/// Starts `request(i)` at `rate` per second for `duration`, without waiting for answers
/// (an open-loop load, as providers send), and collects every answer.
pub async fn paced<T, F, Fut>(rate: f64, duration: Duration, request: F) -> Run<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let start = Instant::now();
    let tokio_start = tokio::time::Instant::from_std(start);
    let mut inflight = JoinSet::new();
    for index in 0..total {
        let due = tokio_start + Duration::from_secs_f64(index as f64 / rate);
        tokio::time::sleep_until(due).await;
        let future = request(index);
        let due = due.into_std();
        inflight.spawn(async move {
            let started_at = Instant::now();
            let outcome = future.await;
            Sample {
                index,
                due,
                started_at,
                answered_at: Instant::now(),
                outcome,
            }
        });
    }
    let mut samples = Vec::with_capacity(total as usize);
    while let Some(done) = inflight.join_next().await {
        if let Ok(sample) = done {
            samples.push(sample);
        }
    }
    finish(start, samples)
}

/// Open loop on a fixed set of keep-alive connections: request `i` is due at `i / rate` s and
/// is written on the first of the `wires` free at or after that moment, so a request that finds
/// them all busy waits in the generator ([`Sample::lag`]), not in the server's latency, which
/// runs from the write ([`Sample::started_at`]) to the whole answer. `make(i)` builds request
/// `i`; `classify` turns the answer (or the failure) into the sample's outcome.
pub async fn paced_on_wires<T, M, C>(
    rate: f64,
    duration: Duration,
    wires: Vec<Wire>,
    timeout: Duration,
    make: M,
    classify: C,
) -> Run<T>
where
    T: Send + 'static,
    M: Fn(u64) -> wire::Request + Send + Sync + 'static,
    C: Fn(Result<Answer, WireError>) -> Result<T, String> + Send + Sync + 'static,
{
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let (make, classify) = (Arc::new(make), Arc::new(classify));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut loops = JoinSet::new();
    for mut wire in wires {
        let (make, classify, next) = (make.clone(), classify.clone(), next.clone());
        loops.spawn(async move {
            let mut samples = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let due = start + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                samples.push(send_on(&mut wire, index, due, timeout, &*make, &*classify).await);
            }
            samples
        });
    }
    collect(start, loops).await
}

/// Closed loop on keep-alive connections, one loop per wire: each writes its next request when
/// the last is answered, after waiting `pause(&outcome)` (a client honouring `Retry-After`),
/// until `duration` has passed. A loop whose connection the server closed opens a new one; the
/// time that takes counts as the generator's lag, as in [`paced_on_wires`]. The loops start
/// spread evenly over `ramp`, as a population of clients arrives, not in one instant.
pub async fn closed_loop_on_wires<T, M, C, P>(
    wires: Vec<Wire>,
    ramp: Duration,
    duration: Duration,
    timeout: Duration,
    make: M,
    classify: C,
    pause: P,
) -> Run<T>
where
    T: Send + 'static,
    M: Fn(u64) -> wire::Request + Send + Sync + 'static,
    C: Fn(Result<Answer, WireError>) -> Result<T, String> + Send + Sync + 'static,
    P: Fn(u64, &Result<T, String>) -> Option<Duration> + Send + Sync + 'static,
{
    let (make, classify, pause) = (Arc::new(make), Arc::new(classify), Arc::new(pause));
    let loops_total = wires.len().max(1) as f64;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for (k, mut wire) in wires.into_iter().enumerate() {
        let (make, classify, pause, next) =
            (make.clone(), classify.clone(), pause.clone(), next.clone());
        let begin = start + ramp.mul_f64(k as f64 / loops_total);
        loops.spawn(async move {
            tokio::time::sleep_until(begin.into()).await;
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let sample = send_on(
                    &mut wire,
                    index,
                    Instant::now(),
                    timeout,
                    &*make,
                    &*classify,
                )
                .await;
                let wait = pause(index, &sample.outcome);
                samples.push(sample);
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
            }
            samples
        });
    }
    collect(start, loops).await
}

/// Readies `wire` (reopening it if needed) and sends request `index` on it.
async fn send_on<T>(
    wire: &mut Wire,
    index: u64,
    due: Instant,
    timeout: Duration,
    make: &(dyn Fn(u64) -> wire::Request + Send + Sync),
    classify: &(dyn Fn(Result<Answer, WireError>) -> Result<T, String> + Send + Sync),
) -> Sample<T> {
    let answer = match tokio::time::timeout(timeout, wire.ready()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(Err(e)),
        Err(_) => Some(Err(WireError::Timeout(timeout))),
    };
    let started_at = Instant::now();
    let answer = match answer {
        Some(failed) => failed,
        None => wire.exchange(make(index), timeout).await,
    };
    let outcome = classify(answer);
    Sample {
        index,
        due,
        started_at,
        answered_at: Instant::now(),
        outcome,
    }
}

async fn collect<T: 'static>(start: Instant, mut loops: JoinSet<Vec<Sample<T>>>) -> Run<T> {
    let mut samples = Vec::new();
    while let Some(done) = loops.join_next().await {
        if let Ok(mut part) = done {
            samples.append(&mut part);
        }
    }
    finish(start, samples)
}

fn finish<T>(start: Instant, samples: Vec<Sample<T>>) -> Run<T> {
    let last = samples.iter().map(|s| s.answered_at).max().unwrap_or(start);
    Run {
        samples,
        elapsed: last - start,
    }
}
