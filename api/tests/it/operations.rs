//! Operations beyond the contract: secret rotation, bulk recovery, endpoint health (pacing and
//! auto-disable), retention and metrics, against the real worker and real receivers.

use std::time::{Duration, Instant};

use chrono::Utc;
use entity::{EventStatus, webhook_events};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use wirehook_testkit::receiver::{Arrival, Receiver, Reply};

use crate::common::{NewEvent, TestApp, error_code};

const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Whether a receiver holding `secret` accepts the delivery.
fn verifies(secret: &str, req: &Arrival) -> bool {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, req.headers[name].parse().expect("header"));
    }
    Webhook::new(secret)
        .expect("secret")
        .verify(&req.body, &headers)
        .is_ok()
}

async fn config(app: &TestApp, receiver: &Receiver, overrides: Value) -> i64 {
    let mut body = json!({
        "url": receiver.url("/hooks"),
        "secret": OLD_SECRET,
        "eventTypes": ["call.completed"],
        "filters": null,
        "headers": null,
        "retryConfig": {"maxAttempts": 3, "initialDelay": 1, "maxDelay": 2, "backoffFactor": 1},
    });
    crate::common::merge(&mut body, overrides);
    app.create_config(body).await["id"].as_i64().expect("id")
}

/// Sends a test delivery and returns what the receiver got.
async fn test_delivery(app: &TestApp, id: i64, receiver: &Receiver) -> Arrival {
    let before = receiver.received().len();
    let (status, body) = app
        .post(
            &format!("/api/webhooks/config/{id}/test"),
            json!({"eventType": "call.completed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = receiver.wait_for(before + 1, Duration::from_secs(5)).await;
    got[before].clone()
}

async fn config_details(app: &TestApp, id: i64) -> Value {
    let (status, body) = app.get(&format!("/api/webhooks/config/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["webhook"].clone()
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns whether it held.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- secret rotation ----

#[tokio::test]
async fn during_the_overlap_both_secrets_verify_and_after_it_only_the_new_one() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    let (status, body) = app
        .post(
            &format!("/api/webhooks/config/{id}/rotate-secret"),
            json!({"secret": NEW_SECRET, "overlapSeconds": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["webhook"]["secret"], NEW_SECRET);
    assert!(
        body["webhook"]["previousSecretExpiresAt"].is_string(),
        "{body}"
    );

    let during = test_delivery(&app, id, &receiver).await;
    assert_eq!(during.headers["webhook-signature"].split(' ').count(), 2);
    assert!(
        verifies(NEW_SECRET, &during),
        "new secret during the overlap"
    );
    assert!(
        verifies(OLD_SECRET, &during),
        "old secret during the overlap"
    );

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = test_delivery(&app, id, &receiver).await;
    assert_eq!(after.headers["webhook-signature"].split(' ').count(), 1);
    assert!(verifies(NEW_SECRET, &after), "new secret after the overlap");
    assert!(
        !verifies(OLD_SECRET, &after),
        "old secret after the overlap"
    );
    assert!(
        config_details(&app, id)
            .await
            .get("previousSecretExpiresAt")
            .is_none()
    );
}

#[tokio::test]
async fn rotating_without_overlap_drops_the_old_secret_at_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    let (status, body) = app
        .post(
            &format!("/api/webhooks/config/{id}/rotate-secret"),
            json!({"overlapSeconds": 0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let generated = body["webhook"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(generated.starts_with("whsec_"), "{generated}");
    let got = test_delivery(&app, id, &receiver).await;
    assert!(verifies(&generated, &got));
    assert!(!verifies(OLD_SECRET, &got));
}

#[tokio::test]
async fn rotating_again_during_an_overlap_makes_the_current_secret_the_old_one() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    let path = format!("/api/webhooks/config/{id}/rotate-secret");
    let (_, first) = app.post(&path, json!({"secret": NEW_SECRET})).await;
    assert_eq!(first["webhook"]["secret"], NEW_SECRET);
    let (status, second) = app.post(&path, json!({})).await;
    assert_eq!(status, 200, "{second}");
    let third = second["webhook"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let got = test_delivery(&app, id, &receiver).await;
    assert!(verifies(&third, &got));
    assert!(verifies(NEW_SECRET, &got));
    assert!(!verifies(OLD_SECRET, &got), "the first secret is gone");
}

#[tokio::test]
async fn the_rotated_secret_is_never_returned_again() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    app.post(
        &format!("/api/webhooks/config/{id}/rotate-secret"),
        json!({"secret": NEW_SECRET}),
    )
    .await;
    let details = config_details(&app, id).await.to_string();
    assert!(
        !details.contains("MfKQ9r8G") && !details.contains("C2FVsBQI"),
        "{details}"
    );
}

#[tokio::test]
async fn rotate_secret_refuses_bad_input() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    let path = format!("/api/webhooks/config/{id}/rotate-secret");
    for (body, code) in [
        (json!({"overlapSeconds": 604_801}), "validation_failed"),
        (json!({"secret": "not base64!"}), "validation_failed"),
        (json!({"secret": OLD_SECRET}), "validation_failed"),
        (json!({"unknown": 1}), "validation_failed"),
    ] {
        let (status, answer) = app.post(&path, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(error_code(&answer), code, "{body} → {answer}");
    }
    let (status, answer) = app
        .post("/api/webhooks/config/999999/rotate-secret", json!({}))
        .await;
    assert_eq!(status, 404, "{answer}");
}

// ---- bulk recovery ----

async fn failed_event(app: &TestApp, config_id: i64, hours_ago: i64) -> i64 {
    app.insert_event(NewEvent {
        attempts: 3,
        created_at: Some(Utc::now() - chrono::Duration::hours(hours_ago)),
        ..NewEvent::outbound("call.completed", config_id, EventStatus::Failed)
    })
    .await
}

async fn message_id(app: &TestApp, id: i64) -> String {
    let (_, body) = app.get(&format!("/api/webhooks/events/{id}")).await;
    body["event"]["messageId"]
        .as_str()
        .expect("messageId")
        .to_owned()
}

#[tokio::test]
async fn recover_redelivers_exactly_the_failed_events_in_the_window() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let other_receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    let other = config(&app, &other_receiver, json!({})).await;
    let in_window = [
        failed_event(&app, id, 2).await,
        failed_event(&app, id, 3).await,
    ];
    let too_old = failed_event(&app, id, 30).await;
    let delivered = app
        .insert_event(NewEvent {
            created_at: Some(Utc::now() - chrono::Duration::hours(2)),
            ..NewEvent::outbound("call.completed", id, EventStatus::Delivered)
        })
        .await;
    let other_config = failed_event(&app, other, 2).await;

    let since = (Utc::now() - chrono::Duration::hours(5)).to_rfc3339();
    let (status, body) = app
        .post(
            &format!("/api/webhooks/config/{id}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["count"], 2);

    let got = receiver.wait_for(2, Duration::from_secs(15)).await;
    let mut seen: Vec<String> = got
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    seen.sort();
    let mut expected = vec![
        message_id(&app, in_window[0]).await,
        message_id(&app, in_window[1]).await,
    ];
    expected.sort();
    assert_eq!(seen, expected, "each keeps its message id");
    for event in in_window {
        let (_, details) = app.get(&format!("/api/webhooks/events/{event}")).await;
        assert!(
            eventually(Duration::from_secs(10), || async {
                app.get(&format!("/api/webhooks/events/{event}")).await.1["event"]["status"]
                    == "delivered"
            })
            .await,
            "{details}"
        );
        let (_, details) = app.get(&format!("/api/webhooks/events/{event}")).await;
        assert_eq!(
            details["event"]["attempts"], 4,
            "the attempt count continues"
        );
    }
    for untouched in [too_old, other_config] {
        let (_, details) = app.get(&format!("/api/webhooks/events/{untouched}")).await;
        assert_eq!(details["event"]["status"], "failed", "{details}");
    }
    let (_, details) = app.get(&format!("/api/webhooks/events/{delivered}")).await;
    assert_eq!(details["event"]["status"], "delivered", "{details}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2);
    assert!(other_receiver.received().is_empty());
}

#[tokio::test]
async fn recover_refuses_a_window_in_the_future_or_reversed() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    let path = format!("/api/webhooks/config/{id}/recover");
    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app.post(&path, json!({"since": future})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let since = Utc::now() - chrono::Duration::hours(1);
    let until = since - chrono::Duration::hours(1);
    let (status, body) = app
        .post(
            &path,
            json!({"since": since.to_rfc3339(), "until": until.to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.post(&path, json!({"since": "yesterday"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
}

#[tokio::test]
async fn recover_needs_an_active_configuration() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({"status": "inactive"})).await;
    let since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app
        .post(
            &format!("/api/webhooks/config/{id}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");
    let (status, _) = app
        .post(
            "/api/webhooks/config/999999/recover",
            json!({"since": since}),
        )
        .await;
    assert_eq!(status, 404);
}

/// Delivery jobs that can still run: waiting, claimed or running (`Done` and dead ones cannot).
async fn runnable_jobs(app: &TestApp) -> i64 {
    count(
        app,
        &format!(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = '{}' \
             AND (status IN ('Pending', 'Queued', 'Running') \
                  OR (status = 'Failed' AND attempts < max_attempts))",
            wirehook_core::job::QUEUE
        ),
    )
    .await
}

/// Waits until `event` is `failed` and no job is left that could attempt it again, then returns
/// its details.
async fn failed_for_good(app: &TestApp, event: i64) -> Value {
    let path = format!("/api/webhooks/events/{event}");
    assert!(
        eventually(Duration::from_secs(60), || async {
            app.get(&path).await.1["event"]["status"] == "failed" && runnable_jobs(app).await == 0
        })
        .await,
        "{}",
        app.get(&path).await.1
    );
    app.get(&path).await.1
}

#[tokio::test]
async fn recover_on_a_failing_endpoint_makes_exactly_max_attempts_new_attempts() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    for max_attempts in [1, 3] {
        let failing = Receiver::always(Reply::Status(500))
            .await
            .expect("receiver");
        let retry = json!({"maxAttempts": max_attempts, "initialDelay": 1, "maxDelay": 1,
                           "backoffFactor": 1});
        let id = config(&app, &failing, json!({"retryConfig": retry})).await;
        let event = enqueue(&app, id, 1).await[0];
        let first = failed_for_good(&app, event).await;
        assert_eq!(first["event"]["attempts"], max_attempts, "{first}");
        assert_eq!(failing.received().len(), max_attempts);

        let since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let (status, body) = app
            .post(
                &format!("/api/webhooks/config/{id}/recover"),
                json!({"since": since}),
            )
            .await;
        assert_eq!((status, body["count"].as_i64()), (202, Some(1)), "{body}");

        let details = failed_for_good(&app, event).await;
        let made = 2 * max_attempts;
        assert_eq!(
            failing.received().len(),
            made,
            "requests the endpoint got, maxAttempts {max_attempts}"
        );
        assert_eq!(details["event"]["attempts"], made, "{details}");
        assert_eq!(
            details["deliveryAttempts"].as_array().map(Vec::len),
            Some(made),
            "{details}"
        );
    }
}

// ---- endpoint health ----

async fn enqueue(app: &TestApp, config_id: i64, n: usize) -> Vec<i64> {
    enqueue_kind(app, config_id, "call", n).await
}

async fn count_status(app: &TestApp, ids: &[i64], status: EventStatus) -> usize {
    webhook_events::Entity::find()
        .filter(webhook_events::Column::Id.is_in(ids.to_vec()))
        .filter(webhook_events::Column::Status.eq(status))
        .all(&app.db)
        .await
        .expect("events")
        .len()
}

#[tokio::test]
async fn a_dead_endpoint_is_probed_one_delivery_at_a_time_and_does_not_slow_a_healthy_one() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker_with(&[("WORKER_CONCURRENCY", "4")]).await;
    // Hangs past the 1 s delivery timeout of the test worker.
    let dead = Receiver::always(Reply::Hang(Duration::from_secs(3)))
        .await
        .expect("receiver");
    let healthy = Receiver::ok().await.expect("receiver");
    let retry = json!({"maxAttempts": 10, "initialDelay": 30, "maxDelay": 60, "backoffFactor": 1});
    let dead_id = config(&app, &dead, json!({"retryConfig": retry})).await;
    let healthy_id = config(&app, &healthy, json!({})).await;

    enqueue(&app, dead_id, 40).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let healthy_events = enqueue(&app, healthy_id, 20).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            count_status(&app, &healthy_events, EventStatus::Delivered).await == 20
        })
        .await
    );
    let took = started.elapsed();
    let dead_attempts = dead.received().len();
    eprintln!("healthy deliveries done {took:?} after enqueue; dead endpoint saw {dead_attempts}");
    // Each dead attempt holds its slot for the 1 s timeout. Unpaced, the 40 dead deliveries,
    // queued first, take all 4 slots: ~4 attempts per second, and the healthy ones wait behind
    // them. Parked: the first wave (one per slot), then one probe at a time, at most one per
    // second, while the healthy ones flow through the other slots.
    let parked_bound = 4 + took.as_secs() as usize + 2;
    assert!(
        dead_attempts <= parked_bound,
        "{dead_attempts} dead attempts in {took:?} (bound {parked_bound})"
    );
    assert!(dead_attempts < 40, "the dead backlog was not parked");
    let details = config_details(&app, dead_id).await;
    assert!(details["failingSince"].is_string(), "{details}");
}

#[tokio::test]
async fn an_endpoint_failing_past_the_threshold_is_disabled_and_can_be_reenabled() {
    let app = TestApp::spawn().await;
    // 0.0005 h = 1.8 s, with at least 10 failed attempts.
    let _worker = app
        .start_worker_with(&[("AUTO_DISABLE_AFTER_HOURS", "0.0005")])
        .await;
    let failing = Receiver::always(Reply::Status(500))
        .await
        .expect("receiver");
    let retry = json!({"maxAttempts": 50, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1});
    let id = config(&app, &failing, json!({"retryConfig": retry})).await;
    enqueue(&app, id, 4).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            config_details(&app, id).await["status"] == "disabled"
        })
        .await,
        "{}",
        config_details(&app, id).await
    );
    let details = config_details(&app, id).await;
    assert!(
        details["failedAttempts"].as_i64().expect("count") >= 10,
        "{details}"
    );
    assert!(
        details["disabledReason"]
            .as_str()
            .expect("reason")
            .contains("failed for 0.0005 hours"),
        "{details}"
    );
    assert!(details["disabledAt"].is_string());
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(
                &app,
                &format!("SELECT count(*) FROM webhook_events WHERE webhook_config_id = {id} AND status = 'pending'"),
            )
            .await
                == 0
        })
        .await,
        "a disabled configuration's deliveries end cancelled, parked ones included"
    );

    let (status, body) = app
        .put(
            &format!("/api/webhooks/config/{id}"),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["webhook"]["status"], "active");
    assert_eq!(body["webhook"]["failedAttempts"], 0);
    assert!(body["webhook"].get("failingSince").is_none(), "{body}");
    assert!(body["webhook"].get("disabledReason").is_none(), "{body}");
}

#[tokio::test]
async fn a_success_resets_the_failing_clock() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::scripted(
        vec![Reply::Status(500), Reply::Status(500)],
        Reply::Status(200),
    )
    .await
    .expect("receiver");
    let retry = json!({"maxAttempts": 5, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1});
    let id = config(&app, &receiver, json!({"retryConfig": retry})).await;
    let events = enqueue(&app, id, 1).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            count_status(&app, &events, EventStatus::Delivered).await == 1
        })
        .await
    );
    let details = config_details(&app, id).await;
    assert_eq!(details["failedAttempts"], 0, "{details}");
    assert!(details.get("failingSince").is_none(), "{details}");
    assert_eq!(details["status"], "active");
}

// ---- parked deliveries ----

/// Waits until `count` reaches `target`, for as long as it keeps rising: a load that slows the
/// machine slows it down, only a stall (nothing for 60 s) ends the wait early. Returns the last
/// count.
async fn progressing<F, Fut>(mut count: F, target: i64) -> i64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = i64>,
{
    const STALL: Duration = Duration::from_secs(60);
    let (mut last, mut moved) = (count().await, Instant::now());
    while last < target && moved.elapsed() < STALL {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = count().await;
        if now > last {
            (last, moved) = (now, Instant::now());
        }
    }
    last
}

/// Deliveries of `config_id` parked behind its endpoint's probe.
async fn parked(app: &TestApp, config_id: i64) -> i64 {
    count(
        app,
        &format!(
            "SELECT count(*) FROM webhook_events WHERE webhook_config_id = {config_id} \
             AND status = 'pending' AND next_attempt_at IS NULL"
        ),
    )
    .await
}

/// Rows inserted, updated or deleted so far in the tables a delivery writes, as PostgreSQL's
/// statistics count them.
async fn rows_written(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint \
         FROM pg_stat_user_tables \
         WHERE (schemaname, relname) IN (('public', 'webhook_events'), \
               ('public', 'webhook_attempts'), ('public', 'webhook_configs'), ('apalis', 'jobs'))",
    )
    .await
}

#[tokio::test]
async fn a_dead_endpoints_backlog_waits_parked_without_writes_and_drains_when_it_recovers() {
    const BACKLOG: usize = 10_000;
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::always(Reply::Reset).await.expect("receiver");
    let retry = json!({"maxAttempts": 50, "initialDelay": 1, "maxDelay": 2, "backoffFactor": 2});
    let id = config(&app, &receiver, json!({"retryConfig": retry})).await;
    make_failing(&app, id).await;
    let started = Instant::now();
    let events = enqueue(&app, id, BACKLOG).await;
    // Every delivery came up once and was parked behind the probe.
    let parked_now = progressing(|| parked(&app, id), (BACKLOG - 1) as i64).await;
    assert!(parked_now >= (BACKLOG - 1) as i64, "{parked_now} parked");
    eprintln!("{BACKLOG} parked after {:?}", started.elapsed());
    // Backends report their statistics when idle, at most every 10 s: let the parking settle
    // into them before the window opens.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (before, opened) = (rows_written(&app).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (written, window) = (rows_written(&app).await - before, opened.elapsed());
    let per_second = written as f64 / window.as_secs_f64();
    eprintln!(
        "{written} rows written in {window:?} ({per_second:.1}/s) with {BACKLOG} deliveries parked, \
         {} attempts so far",
        receiver.received().len()
    );
    // One probe per hold (at least 1 s, a quarter of the outage so far), each about ten row
    // writes (attempt, event, job and its three states, the endpoint's clock), and the retries
    // of the deliveries under way when the gate closed. Polling, each parked delivery would be
    // written every few seconds: thousands a second.
    assert!(
        per_second <= 20.0,
        "{per_second:.1} rows written per second while down"
    );

    receiver.set_fallback(wirehook_testkit::receiver::Route::ok());
    let recovered = Instant::now();
    let delivered = progressing(
        || async { count_status(&app, &events, EventStatus::Delivered).await as i64 },
        BACKLOG as i64,
    )
    .await;
    assert_eq!(
        delivered,
        BACKLOG as i64,
        "delivery stopped short: config {}, parked {}, jobs {:?}, probe {:?}, sessions {:#?}",
        config_details(&app, id).await,
        parked(&app, id).await,
        jobs_by_status(&app).await,
        sea_orm::sqlx::query_as::<_, (Option<chrono::DateTime<Utc>>, chrono::DateTime<Utc>, i32)>(
            "SELECT probe_until, now(), failed_attempts FROM webhook_configs WHERE id = $1"
        )
        .bind(id)
        .fetch_one(app.db.get_postgres_connection_pool())
        .await
        .expect("probe"),
        sea_orm::sqlx::query_as::<
            _,
            (
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>
            ),
        >(
            "SELECT state, wait_event_type || ':' || wait_event, left(query, 300), \
                    (now() - query_start)::text \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        .fetch_all(app.db.get_postgres_connection_pool())
        .await
        .expect("sessions")
    );
    eprintln!(
        "{BACKLOG} delivered {:?} after the endpoint recovered",
        recovered.elapsed()
    );
    let details = config_details(&app, id).await;
    assert!(details.get("failingSince").is_none(), "{details}");
}

/// Fails deliveries of `config_id` until its endpoint gets one delivery at a time.
async fn make_failing(app: &TestApp, config_id: i64) {
    enqueue(app, config_id, 3).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            config_details(app, config_id).await["failedAttempts"]
                .as_i64()
                .is_some_and(|n| n >= i64::from(wirehook_core::store::GATE_AFTER_FAILURES))
        })
        .await
    );
}

#[tokio::test]
async fn a_failing_endpoint_whose_probe_has_no_retry_left_is_probed_by_a_parked_delivery() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::always(Reply::Status(503))
        .await
        .expect("receiver");
    // Every attempt is its delivery's last: a failed probe schedules no retry.
    let retry = json!({"maxAttempts": 1, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1});
    let id = config(&app, &receiver, json!({"retryConfig": retry})).await;
    make_failing(&app, id).await;
    // One delivery probes and is held in flight; the others park behind it.
    let hold = receiver.hold();
    let events = enqueue(&app, id, 40).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            parked(&app, id).await == 39
        })
        .await,
        "{} parked",
        parked(&app, id).await
    );
    // The probe fails for good: no retry of it will come.
    drop(hold);
    assert!(
        eventually(Duration::from_secs(60), || async {
            count_status(&app, &events, EventStatus::Failed).await >= 1
        })
        .await
    );
    // A parked delivery probes next (and fails as well until the endpoint answers again).
    receiver.set_fallback(wirehook_testkit::receiver::Route::ok());
    assert!(
        eventually(Duration::from_secs(60), || async {
            count_status(&app, &events, EventStatus::Delivered).await
                + count_status(&app, &events, EventStatus::Failed).await
                == 40
        })
        .await,
        "{} delivered, {} failed, {} parked",
        count_status(&app, &events, EventStatus::Delivered).await,
        count_status(&app, &events, EventStatus::Failed).await,
        parked(&app, id).await
    );
    assert!(count_status(&app, &events, EventStatus::Delivered).await >= 1);
}

/// Enqueues `n` deliveries to `config_id` whose payload says `kind`.
async fn enqueue_kind(app: &TestApp, config_id: i64, kind: &str, n: usize) -> Vec<i64> {
    let deliveries = (0..n)
        .map(|i| wirehook_core::queue::NewDelivery {
            config_id: entity::ConfigId(config_id),
            source: entity::Source::Platform,
            event_type: "call.completed".into(),
            payload: json!({"callId": format!("{kind}-{i}"), "kind": kind}),
            parent_event_id: None,
        })
        .collect();
    wirehook_core::queue::enqueue(&app.db, deliveries)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.event_id.0)
        .collect()
}

#[tokio::test]
async fn a_delivery_the_receiver_always_rejects_does_not_hold_a_gated_endpoint_for_its_retries() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    // The receiver rejects one kind of payload every time and takes every other.
    let receiver = Receiver::ok().await.expect("receiver");
    receiver.set_fallback(wirehook_testkit::receiver::Route::new(
        |d: &wirehook_testkit::receiver::Delivery<'_>| {
            let poison = String::from_utf8_lossy(d.body).contains("\"poison\"");
            Reply::Status(if poison { 500 } else { 200 })
        },
    ));
    // A poison delivery's next retry is an hour away.
    let retry =
        json!({"maxAttempts": 5, "initialDelay": 3600, "maxDelay": 3600, "backoffFactor": 1});
    let id = config(&app, &receiver, json!({"retryConfig": retry})).await;
    let poison = enqueue_kind(&app, id, "poison", 3).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            config_details(&app, id).await["failedAttempts"]
                .as_i64()
                .is_some_and(|n| n >= i64::from(wirehook_core::store::GATE_AFTER_FAILURES))
        })
        .await,
        "the endpoint is gated"
    );
    // Held until the last poison retry, these would wait an hour; the endpoint's own backoff
    // lets one of them probe within seconds, and its delivery sets the rest going.
    let good = enqueue_kind(&app, id, "good", 20).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            count_status(&app, &good, EventStatus::Delivered).await == 20
        })
        .await,
        "{} of 20 delivered, {} parked",
        count_status(&app, &good, EventStatus::Delivered).await,
        parked(&app, id).await
    );
    assert_eq!(count_status(&app, &poison, EventStatus::Pending).await, 3);
}

// ---- finished jobs ----

/// Inserts a delivery job with `status`, `attempts` of 25, finished `done_secs_ago` (if any).
async fn job(app: &TestApp, status: &str, attempts: i32, done_secs_ago: Option<i64>) {
    sea_orm::sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, \
                                  done_at, priority) \
         VALUES (md5(random()::text), $1, '\\x7b7d', $2, $3, 25, now(), \
                 now() - $4 * interval '1 second', 0)",
    )
    .bind(wirehook_core::job::QUEUE)
    .bind(status)
    .bind(attempts)
    .bind(done_secs_ago.map(|s| s as f64))
    .execute(app.db.get_postgres_connection_pool())
    .await
    .expect("insert job");
}

async fn jobs_by_status(app: &TestApp) -> Vec<(String, i64)> {
    sea_orm::sqlx::query_as(
        "SELECT status, count(*) FROM apalis.jobs GROUP BY status ORDER BY status",
    )
    .fetch_all(app.db.get_postgres_connection_pool())
    .await
    .expect("jobs")
}

#[tokio::test]
async fn forgetting_deletes_only_jobs_finished_longer_ago_than_the_history_window() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        job(&app, "Done", 1, Some(3_600)).await;
    }
    job(&app, "Killed", 25, Some(3_600)).await;
    job(&app, "Failed", 25, Some(3_600)).await; // out of attempts
    job(&app, "Failed", 2, Some(3_600)).await; // apalis retries it
    job(&app, "Done", 1, Some(1)).await; // within the window
    job(&app, "Pending", 0, None).await;
    job(&app, "Running", 0, None).await;
    let pool = app.db.get_postgres_connection_pool();
    let mut conn = pool.acquire().await.expect("connection");
    let deleted = wirehook_core::queue::finished::forget(&mut conn, Duration::from_secs(60))
        .await
        .expect("forget");
    assert_eq!(deleted, 5);
    assert_eq!(
        jobs_by_status(&app).await,
        [
            ("Done".to_owned(), 1),
            ("Failed".to_owned(), 1),
            ("Pending".to_owned(), 1),
            ("Running".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn a_worker_keeps_no_finished_job_past_job_history_secs() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker_with(&[("JOB_HISTORY_SECS", "0")]).await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    let events = enqueue(&app, id, 100).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            count_status(&app, &events, EventStatus::Delivered).await == 100
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(&app, "SELECT count(*) FROM apalis.jobs").await == 0
        })
        .await,
        "{:?}",
        jobs_by_status(&app).await
    );
}

// ---- retention ----

/// Inserts `n` events of `status` created `days_ago` days ago, each with one attempt, into
/// that day's partition (created when missing, as for a database that has run that long).
async fn old_events(app: &TestApp, config_id: i64, status: &str, days_ago: i64, n: i64) {
    app.db
        .execute_unprepared(&format!(
            "SELECT webhook_history_ensure_days( \
               ((now() - interval '{days_ago} days') AT TIME ZONE 'UTC')::date, \
               ((now() - interval '{days_ago} days') AT TIME ZONE 'UTC')::date); \
             WITH e AS ( \
               INSERT INTO webhook_events (id, message_id, direction, source, event_type, \
                 payload, status, attempts, webhook_config_id, created_at, updated_at) \
               SELECT webhook_event_id(now() - interval '{days_ago} days'), \
                 'msg_old_' || md5(random()::text), 'outbound', '11wire', 'call.completed', \
                 '{{}}', '{status}', 1, {config_id}, now() - interval '{days_ago} days', now() \
               FROM generate_series(1, {n}) RETURNING id) \
             INSERT INTO webhook_attempts (event_id, attempt, duration_ms) SELECT id, 1, 5 FROM e"
        ))
        .await
        .expect("insert old events");
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql.to_owned(),
        ))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<i64>(0).expect("count")
}

#[tokio::test]
async fn purge_drops_whole_days_past_retention_with_their_attempts() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    old_events(&app, id, "delivered", 40, 2_500).await;
    old_events(&app, id, "failed", 40, 3).await;
    old_events(&app, id, "delivered", 5, 4).await;

    let purged = wirehook_core::retention::purge(&app.db, Duration::from_secs(30 * 86_400))
        .await
        .expect("purge");
    assert_eq!((purged.events, purged.days_dropped), (2_503, 1));
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_events").await, 4);
    assert_eq!(
        count(&app, "SELECT count(*) FROM webhook_attempts").await,
        4
    );
    let day = (Utc::now() - chrono::Duration::days(40)).format("%Y%m%d");
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM pg_class WHERE relname = 'webhook_events_p{day}'")
        )
        .await,
        0
    );
}

#[tokio::test]
async fn purge_keeps_a_day_whole_while_it_holds_a_pending_event() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    old_events(&app, id, "delivered", 41, 4).await;
    old_events(&app, id, "pending", 41, 2).await;
    let retention = Duration::from_secs(30 * 86_400);

    let purged = wirehook_core::retention::purge(&app.db, retention)
        .await
        .expect("purge");
    assert_eq!((purged.events, purged.days_held), (0, 1));
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_events").await, 6);

    app.db
        .execute_unprepared("UPDATE webhook_events SET status = 'failed' WHERE status = 'pending'")
        .await
        .expect("settle");
    let purged = wirehook_core::retention::purge(&app.db, retention)
        .await
        .expect("purge");
    assert_eq!((purged.events, purged.days_held), (6, 0));
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_events").await, 0);
}

#[tokio::test]
async fn the_history_total_stays_exact_when_a_day_is_dropped() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    old_events(&app, id, "delivered", 40, 30).await;
    old_events(&app, id, "failed", 2, 3).await;
    let (_, before) = app.get("/api/webhooks/events").await;
    assert_eq!(before["total"], 33, "{before}");

    wirehook_core::retention::purge(&app.db, Duration::from_secs(30 * 86_400))
        .await
        .expect("purge");
    let (_, after) = app.get("/api/webhooks/events").await;
    assert_eq!(after["total"], 3, "{after}");
}

#[tokio::test]
async fn api_purge_prints_how_many_events_it_deleted() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    old_events(&app, id, "failed", 40, 7).await;
    old_events(&app, id, "delivered", 1, 2).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["purge", "--older-than", "30d"])
        .env("DATABASE_URL", app.database_url())
        .output()
        .expect("run api purge");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "7\n");
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_events").await, 2);
}

#[tokio::test]
async fn api_purge_refuses_a_malformed_age() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["purge", "--older-than", "soon"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .expect("run api purge");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("api: --older-than"), "{stderr}");
}

#[tokio::test]
async fn the_worker_purges_by_retention_days() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    old_events(&app, id, "delivered", 3, 5).await;
    old_events(&app, id, "delivered", 0, 1).await;
    let _worker = app.start_worker_with(&[("RETENTION_DAYS", "2")]).await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            count(&app, "SELECT count(*) FROM webhook_events").await == 1
        })
        .await
    );
}

#[tokio::test]
async fn the_worker_creates_the_history_partitions_of_the_week_ahead() {
    let app = TestApp::spawn().await;
    let last = Utc::now().date_naive() + chrono::Days::new(7);
    app.db
        .execute_unprepared(&format!(
            "DROP TABLE webhook_events_p{0}; DROP TABLE webhook_attempts_p{0}",
            last.format("%Y%m%d")
        ))
        .await
        .expect("drop the last day ahead");
    let _worker = app.start_worker().await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            let (days, _) = wirehook_core::partitions::days(&app.db)
                .await
                .expect("days");
            days.contains(&last)
        })
        .await
    );
}

// ---- metrics ----

#[tokio::test]
async fn metrics_expose_deliveries_attempt_durations_and_the_queue() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let id = config(&app, &receiver, json!({})).await;
    enqueue(&app, id, 1).await;
    receiver.wait_for(1, Duration::from_secs(15)).await;
    const EXPECTED: [&str; 5] = [
        r#"wirehook_deliveries_total{result="delivered"}"#,
        "wirehook_delivery_attempt_duration_seconds_bucket",
        "wirehook_queue_pending_jobs",
        "wirehook_queue_oldest_pending_age_seconds",
        "wirehook_worker_in_flight",
    ];
    // The queue gauges are sampled every second by the leader replica.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        if EXPECTED.iter().all(|name| text.contains(name)) {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_count_inbound_requests_by_result() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/api/webhooks/signalwire"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains(
            r#"wirehook_inbound_requests_total{source="signalwire",result="rejected_signature"}"#
        ),
        "{text}"
    );
}
