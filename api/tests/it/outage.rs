//! PostgreSQL goes away and comes back: the api answers `503 database_unavailable` within the
//! pool's acquire timeout instead of hanging, `/readyz` fails, and the api serves again by
//! itself once the database returns. Each test runs the app (with the binary's pool) on a
//! throwaway cluster of its own that it stops and starts.

use std::time::{Duration, Instant};

use serde_json::json;
use wirehook_core::process::ACQUIRE_TIMEOUT;
use wirehook_testkit::cluster::{Cluster, Durability};

use crate::common::{TestApp, error_code, read};
use crate::inbound::{inbound_events, post_signalwire, signalwire_call};

/// How much longer than the acquire timeout an answer may take (scheduling, a loaded machine).
const SLACK: Duration = Duration::from_secs(2);

/// The app on its own cluster. The app is declared first so that it is dropped first.
struct Outage {
    app: TestApp,
    cluster: Cluster,
}

impl Outage {
    async fn start() -> Self {
        let cluster = Cluster::start(Durability::Fast)
            .await
            .expect("throwaway cluster");
        let app = TestApp::spawn_on(&cluster.url()).await;
        Self { app, cluster }
    }

    /// Stops PostgreSQL (`pg_ctl -m fast`: the app's connections are closed).
    async fn stop_database(&self) {
        self.cluster.stop().await.expect("stop the cluster");
    }

    /// Starts PostgreSQL again and waits until it accepts connections.
    async fn resume_database(&self) {
        self.cluster
            .resume()
            .await
            .expect("start the cluster again");
    }

    /// `GET path` (authorized) and how long the answer took.
    async fn timed_get(&self, path: &str) -> ((u16, serde_json::Value), Duration) {
        let started = Instant::now();
        let answer = self.app.get(path).await;
        (answer, started.elapsed())
    }
}

#[tokio::test]
async fn a_request_while_postgresql_is_down_is_503_database_unavailable_within_the_acquire_timeout()
{
    let outage = Outage::start().await;
    assert_eq!(outage.app.get("/api/webhooks/config").await.0, 200);
    outage.stop_database().await;

    let ((status, body), took) = outage.timed_get("/api/webhooks/config").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "database_unavailable");
    assert!(took <= ACQUIRE_TIMEOUT + SLACK, "answered after {took:?}");
}

#[tokio::test]
async fn readyz_is_503_while_postgresql_is_down() {
    let outage = Outage::start().await;
    outage.stop_database().await;

    let started = Instant::now();
    let resp = outage
        .app
        .client
        .get(outage.app.url("/readyz"))
        .send()
        .await
        .expect("send");
    let took = started.elapsed();
    assert_eq!(
        read(resp).await,
        (503, json!({"status": "database unreachable"}))
    );
    assert!(took <= ACQUIRE_TIMEOUT + SLACK, "answered after {took:?}");
}

#[tokio::test]
async fn the_api_serves_again_by_itself_once_postgresql_returns() {
    let outage = Outage::start().await;
    outage.stop_database().await;
    assert_eq!(outage.app.get("/api/webhooks/config").await.0, 503);

    outage.resume_database().await;
    // No restart, no waiting: the pool drops its broken connections and opens new ones.
    let (status, body) = outage.app.get("/api/webhooks/config").await;
    assert_eq!(status, 200, "{body}");
    let resp = outage
        .app
        .client
        .get(outage.app.url("/readyz"))
        .send()
        .await
        .expect("send");
    assert_eq!(read(resp).await, (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn a_provider_webhook_while_postgresql_is_down_is_503_and_its_retry_is_recorded() {
    let outage = Outage::start().await;
    let body = signalwire_call("call.completed", "CA-outage-1", "campaign-123");
    outage.stop_database().await;

    // Not 200: the provider keeps the event and retries it.
    let (status, answer) = post_signalwire(&outage.app, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(error_code(&answer), "database_unavailable");

    outage.resume_database().await;
    let (status, answer) = post_signalwire(&outage.app, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], json!(false), "{answer}");
    let processed = inbound_events(&outage.app, "processed").await;
    assert_eq!(processed.len(), 1, "{processed:?}");
}
