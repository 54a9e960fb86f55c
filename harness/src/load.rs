//! Provider requests signed as the provider signs them, and two load generators:
//! [`closed_loop`] (N connections, each sending its next request when the last is answered)
//! and [`paced`] (requests started at a fixed rate, whatever the answers).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

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
    /// When it was started.
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

/// Like [`closed_loop`], but each loop waits `pause(&outcome)` after an answer before its next
/// request (a client honouring `Retry-After`); the wait is not part of any sample.
pub async fn closed_loop_pausing<T, F, Fut, P>(
    connections: usize,
    duration: Duration,
    request: F,
    pause: P,
) -> Run<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send,
    P: Fn(&Result<T, String>) -> Option<Duration> + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let pause = Arc::new(pause);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for _ in 0..connections {
        let (request, pause, next) = (request.clone(), pause.clone(), next.clone());
        loops.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let started_at = Instant::now();
                let outcome = request(index).await;
                let wait = pause(&outcome);
                samples.push(Sample {
                    index,
                    started_at,
                    answered_at: Instant::now(),
                    outcome,
                });
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
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
        inflight.spawn(async move {
            let started_at = Instant::now();
            let outcome = future.await;
            Sample {
                index,
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

fn finish<T>(start: Instant, samples: Vec<Sample<T>>) -> Run<T> {
    let last = samples.iter().map(|s| s.answered_at).max().unwrap_or(start);
    Run {
        samples,
        elapsed: last - start,
    }
}
