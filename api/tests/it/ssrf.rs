//! The SSRF guard in production mode: deliveries to loopback, private, link-local and
//! metadata addresses (as literals or through DNS) are refused before any connection, and
//! recorded as a failed attempt; redirects are never followed.
//!
//! A probe listener stands in for an internal service. Deliveries are synchronous (the test
//! endpoint) or awaited, and the kernel completes a TCP handshake before anyone accepts it, so
//! once the delivery is recorded any connection made would already be in the probe's queue.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wirehook_testkit::receiver::{Receiver, Reply};

use crate::common::TestApp;

/// A listener nobody should ever connect to.
struct Probe {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Probe {
    fn bind(addr: &str) -> Option<Self> {
        let listener = TcpListener::bind(addr).ok()?;
        listener.set_nonblocking(true).expect("non-blocking probe");
        let addr = listener.local_addr().expect("probe address");
        Some(Self { listener, addr })
    }

    fn v4() -> Self {
        Self::bind("127.0.0.1:0").expect("bind a probe on 127.0.0.1")
    }

    /// Connections made to the probe so far.
    fn connections(&self) -> usize {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("probe accept: {e}"),
            }
        }
    }
}

/// Creates a configuration for `url` and sends it a test delivery; returns the test answer.
async fn test_delivery(app: &TestApp, url: &str) -> Value {
    let id = app
        .create_config(json!({"url": url, "filters": null}))
        .await["id"]
        .as_i64()
        .expect("id");
    let (status, answer) = app
        .post(
            &format!("/api/webhooks/config/{id}/test"),
            json!({"eventType": "call.completed"}),
        )
        .await;
    assert_eq!(status, 200, "{url}: {answer}");
    answer
}

/// Asserts the test delivery was refused by the guard and recorded as a failed attempt.
async fn assert_refused_by_the_guard(app: &TestApp, url: &str, answer: &Value) {
    let details = &answer["details"];
    assert_eq!(details["delivered"], false, "{url}: {answer}");
    assert!(details.get("statusCode").is_none(), "{url}: {answer}");
    assert!(
        details["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("ssrf_blocked")),
        "{url}: {answer}"
    );
    let (_, event) = app
        .get(&format!("/api/webhooks/events/{}", details["eventId"]))
        .await;
    assert_eq!(event["event"]["status"], "failed", "{url}: {event}");
    let attempts = event["deliveryAttempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{url}: {event}");
    assert_eq!(attempts[0]["errorKind"], "ssrf_blocked", "{url}: {event}");
    assert!(attempts[0].get("statusCode").is_none(), "{url}: {event}");
}

#[tokio::test]
async fn the_probe_sees_a_delivery_when_private_targets_are_allowed() {
    // The control for every test below: in development the same delivery does connect.
    let app = TestApp::spawn().await;
    let probe = Probe::v4();
    let answer = test_delivery(&app, &format!("http://{}/hook", probe.addr)).await;
    assert_eq!(answer["details"]["delivered"], false, "{answer}");
    assert!(probe.connections() >= 1);
}

#[tokio::test]
async fn a_loopback_ipv4_target_is_refused_and_never_connected() {
    let app = TestApp::spawn_guarded().await;
    let probe = Probe::v4();
    let url = format!("http://{}/hook", probe.addr);
    let answer = test_delivery(&app, &url).await;
    assert_refused_by_the_guard(&app, &url, &answer).await;
    assert_eq!(probe.connections(), 0);
}

#[tokio::test]
async fn a_loopback_ipv6_target_is_refused_and_never_connected() {
    let app = TestApp::spawn_guarded().await;
    let probe = Probe::bind("[::1]:0");
    let port = probe.as_ref().map_or(9, |p| p.addr.port());
    let url = format!("http://[::1]:{port}/hook");
    let answer = test_delivery(&app, &url).await;
    assert_refused_by_the_guard(&app, &url, &answer).await;
    if let Some(probe) = probe {
        assert_eq!(probe.connections(), 0);
    }
}

#[tokio::test]
async fn a_private_10_0_0_0_target_is_refused_at_delivery() {
    let app = TestApp::spawn_guarded().await;
    let url = "http://10.0.0.1/hook";
    let answer = test_delivery(&app, url).await;
    assert_refused_by_the_guard(&app, url, &answer).await;
}

#[tokio::test]
async fn the_cloud_metadata_address_is_refused_at_delivery() {
    let app = TestApp::spawn_guarded().await;
    let url = "http://169.254.169.254/latest/meta-data/";
    let answer = test_delivery(&app, url).await;
    assert_refused_by_the_guard(&app, url, &answer).await;
}

#[tokio::test]
async fn other_spellings_of_private_addresses_are_refused_at_delivery() {
    let app = TestApp::spawn_guarded().await;
    let probe = Probe::v4();
    let port = probe.addr.port();
    for url in [
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://0.0.0.0:{port}/"),
    ] {
        let answer = test_delivery(&app, &url).await;
        assert_refused_by_the_guard(&app, &url, &answer).await;
    }
    assert_eq!(probe.connections(), 0);
}

#[tokio::test]
async fn a_host_name_resolving_to_loopback_is_refused_and_never_connected() {
    let app = TestApp::spawn_guarded().await;
    let probe = Probe::v4();
    let url = format!("http://localhost:{}/hook", probe.addr.port());
    let answer = test_delivery(&app, &url).await;
    assert_refused_by_the_guard(&app, &url, &answer).await;
    assert_eq!(probe.connections(), 0);
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_not_followed() {
    // Private targets are allowed here so that the first hop (on 127.0.0.1) is reached at all.
    let app = TestApp::spawn().await;
    let probe = Probe::v4();
    // Answers every request with `302 Found` to the probe.
    let redirector = Receiver::always(Reply::Redirect(format!("http://{}/internal", probe.addr)))
        .await
        .expect("redirector");
    let answer = test_delivery(&app, &redirector.url("/hook")).await;
    assert_eq!(answer["details"]["delivered"], false, "{answer}");
    assert_eq!(answer["details"]["statusCode"], 302, "{answer}");
    let (_, event) = app
        .get(&format!(
            "/api/webhooks/events/{}",
            answer["details"]["eventId"]
        ))
        .await;
    assert_eq!(event["deliveryAttempts"][0]["statusCode"], 302, "{event}");
    assert_eq!(probe.connections(), 0);
}

#[tokio::test]
async fn a_guarded_worker_refuses_a_queued_delivery_to_a_private_target() {
    let app = TestApp::spawn().await;
    let _worker = app
        .start_worker_with(&[("ALLOW_PRIVATE_TARGETS", "false")])
        .await;
    let probe = Probe::v4();
    app.create_config(json!({
        "url": format!("http://{}/hook", probe.addr),
        "eventTypes": ["contact.created"],
        "filters": null,
        "retryConfig": {"maxAttempts": 1},
    }))
    .await;
    let (status, published) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "contact.created", "payload": {"contactId": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{published}");
    let (_, list) = app.get("/api/webhooks/events?direction=outbound").await;
    let id = list["events"][0]["id"].as_i64().expect("outbound event");
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let (_, event) = app.get(&format!("/api/webhooks/events/{id}")).await;
        if event["event"]["status"] == "failed" || Instant::now() > deadline {
            break event;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["event"]["status"], "failed", "{event}");
    assert_eq!(
        event["deliveryAttempts"][0]["errorKind"], "ssrf_blocked",
        "{event}"
    );
    assert_eq!(probe.connections(), 0);
}
