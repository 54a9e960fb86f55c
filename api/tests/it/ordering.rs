//! Ordered delivery per key: configurations with `ordering`, published through real apis,
//! delivered by real worker replicas to real receivers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use wirehook_testkit::receiver::{Arrival, Delivery, Keep, Receiver, Reply, Route};

use crate::common::{TestApp, error_code, read};

/// Long enough for any state a test waits for; a test that needs it has failed.
const WAIT: Duration = Duration::from_secs(120);

/// Retries every second, practically forever: a receiver failing 20% of attempts never makes
/// a delivery fail for good.
fn fast_retries(max_attempts: u32) -> Value {
    json!({"maxAttempts": max_attempts, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1})
}

async fn ordered_config(app: &TestApp, receiver: &Receiver, path: &str, extra: Value) -> i64 {
    let mut body = json!({
        "url": receiver.url(path),
        "filters": null,
        "eventTypes": ["call.completed"],
        "retryConfig": fast_retries(50),
    });
    crate::common::merge(&mut body, extra);
    let config = app.create_config(body).await;
    config["id"].as_i64().expect("config id")
}

/// Publishes `payload` as `call.completed` through the api at `base`, as a client does: a 503
/// (the api at capacity) is sent again after its `Retry-After`; returns the event id.
async fn publish(app: &TestApp, base: &str, payload: Value, ordering_key: Option<&str>) -> i64 {
    let mut body = json!({"eventType": "call.completed", "payload": payload});
    if let Some(key) = ordering_key {
        body["orderingKey"] = json!(key);
    }
    loop {
        let response = app
            .client
            .post(format!("{base}/api/webhooks/events"))
            .bearer_auth(&app.token)
            .json(&body)
            .send()
            .await
            .expect("publish");
        let (status, json) = read(response).await;
        if status == 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(status, 201, "publish: {json}");
        return json["event"]["id"].as_i64().expect("event id");
    }
}

/// One outbound delivery: `(id, status, waiting on its key, ordering sequence)`.
type Row = (i64, String, bool, Option<i64>);

/// The outbound deliveries of configuration `config_id`, by key and sequence.
async fn deliveries(app: &TestApp, config_id: i64) -> Vec<Row> {
    let rows = app
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, status, waiting_on_key, ordering_seq FROM webhook_events \
             WHERE webhook_config_id = $1 ORDER BY ordering_key, ordering_seq, id",
            [config_id.into()],
        ))
        .await
        .expect("deliveries");
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "id").expect("id"),
                r.try_get("", "status").expect("status"),
                r.try_get("", "waiting_on_key").expect("waiting"),
                r.try_get("", "ordering_seq").expect("seq"),
            )
        })
        .collect()
}

/// Waits until `done` holds for the deliveries of `config_id`; returns them.
async fn wait_deliveries(
    app: &TestApp,
    config_id: i64,
    what: &str,
    done: impl Fn(&[Row]) -> bool,
) -> Vec<Row> {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = deliveries(app, config_id).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all_delivered(n: usize) -> impl Fn(&[Row]) -> bool {
    move |d| d.len() == n && d.iter().all(|e| e.1 == "delivered")
}

async fn event(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/webhooks/events/{id}")).await.1["event"].clone()
}

fn body(arrival: &Arrival) -> Value {
    serde_json::from_slice(&arrival.body).expect("a delivery body is JSON")
}

/// The first answered-2xx arrival of each message, in arrival order.
fn first_successes(arrivals: &[Arrival]) -> Vec<Value> {
    let mut seen = HashSet::new();
    arrivals
        .iter()
        .filter(|a| a.reply == Reply::Status(200))
        .filter(|a| seen.insert(a.webhook_id.clone()))
        .map(body)
        .collect()
}

/// A deterministic "random" 20% of attempts: by the message id and which attempt it is.
fn fails_one_in_five(delivery: &Delivery<'_>) -> Reply {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (delivery.webhook_id, delivery.nth).hash(&mut hasher);
    if hasher.finish().is_multiple_of(5) {
        Reply::Status(500)
    } else {
        Reply::Status(200)
    }
}

#[tokio::test]
async fn two_hundred_keys_arrive_in_order_through_two_apis_and_three_workers() {
    const KEYS: usize = 200;
    const EVENTS: usize = 10;
    let app = TestApp::spawn().await;
    let second_api = app.start_api_replica().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    receiver.set_fallback(Route::new(fails_one_in_five));
    let ordered = ordered_config(
        &app,
        &receiver,
        "/ordered",
        json!({"ordering": {"key": "/callId", "onStuck": "block"}}),
    )
    .await;
    let unordered = ordered_config(&app, &receiver, "/unordered", json!({})).await;
    let _workers = [
        app.start_worker().await,
        app.start_worker().await,
        app.start_worker().await,
    ];

    // Each key's events one after another (accept order is the order asked for), the keys all
    // at once, every other event through the other api.
    let apis = [app.url(""), second_api];
    let keys = (0..KEYS).map(|k| {
        let (app, apis) = (&app, &apis);
        async move {
            for n in 1..=EVENTS {
                let payload = json!({"callId": format!("call-{k}"), "n": n});
                publish(app, &apis[(k + n) % 2], payload, None).await;
            }
        }
    });
    futures::future::join_all(keys).await;

    wait_deliveries(&app, ordered, "ordered", all_delivered(KEYS * EVENTS)).await;
    wait_deliveries(&app, unordered, "unordered", all_delivered(KEYS * EVENTS)).await;

    let arrivals = receiver.received();
    let (ordered_arrivals, unordered_arrivals): (Vec<Arrival>, Vec<Arrival>) =
        arrivals.into_iter().partition(|a| a.path == "/ordered");
    let mut by_key: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for body in first_successes(&ordered_arrivals) {
        let key = body["ordering"]["key"].as_str().expect("key").to_owned();
        assert_eq!(body["data"]["callId"], key.as_str());
        by_key.entry(key).or_default().push((
            body["data"]["n"].as_u64().expect("n"),
            body["ordering"]["sequence"].as_i64().expect("sequence"),
        ));
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, got) in &by_key {
        let expected: Vec<(u64, i64)> = (1..=EVENTS).map(|n| (n as u64, n as i64)).collect();
        assert_eq!(
            got, &expected,
            "key {key}: (n, sequence) of first successes"
        );
    }
    let unordered_bodies = first_successes(&unordered_arrivals);
    assert_eq!(unordered_bodies.len(), KEYS * EVENTS);
    assert!(
        unordered_bodies.iter().all(|b| b.get("ordering").is_none()),
        "an unordered configuration's bodies carry no ordering"
    );
    let retried = ordered_arrivals
        .iter()
        .filter(|a| a.reply == Reply::Status(500))
        .count();
    assert!(retried > 0, "the receiver failed some attempts");
}

#[tokio::test]
async fn the_signed_body_links_each_event_to_the_one_before_it() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId"}}),
    )
    .await;
    let base = app.url("");
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(publish(&app, &base, json!({"callId": "CA1", "n": n}), None).await);
    }
    let _worker = app.start_worker().await;
    wait_deliveries(&app, config, "delivered", all_delivered(3)).await;
    let bodies = first_successes(&receiver.received());
    let message_ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|a| a.webhook_id.clone().expect("webhook-id"))
        .collect();
    assert_eq!(
        bodies[0]["ordering"],
        json!({"key": "CA1", "sequence": 1, "previousId": null})
    );
    assert_eq!(bodies[1]["ordering"]["previousId"], message_ids[0].as_str());
    assert_eq!(bodies[2]["ordering"]["previousId"], message_ids[1].as_str());
    assert_eq!(bodies[2]["ordering"]["sequence"], 3);
    // The history shows the same.
    let outbound = deliveries(&app, config).await;
    let last = event(&app, outbound[2].0).await;
    assert_eq!(last["ordering"]["sequence"], 3);
    assert_eq!(last["ordering"]["key"], "CA1");
    assert_eq!(last["ordering"]["waiting"], false);
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn only_the_head_of_a_key_has_a_job_and_other_keys_go_meanwhile() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId"}}),
    )
    .await;
    let base = app.url("");
    for n in 1..=3 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    publish(&app, &base, json!({"callId": "B", "n": 1}), None).await;
    // No worker yet: the state the fan-out wrote.
    let before = deliveries(&app, config).await;
    let waiting: Vec<(bool, Option<i64>)> = before.iter().map(|d| (d.2, d.3)).collect();
    assert_eq!(
        waiting,
        [
            (false, Some(1)),
            (true, Some(2)),
            (true, Some(3)),
            (false, Some(1))
        ]
    );
    let jobs = app
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM apalis.jobs",
        ))
        .await
        .expect("jobs")
        .expect("row");
    assert_eq!(
        jobs.try_get::<i64>("", "n").expect("n"),
        2,
        "one job per key head"
    );
    let _worker = app.start_worker().await;
    wait_deliveries(&app, config, "delivered", all_delivered(4)).await;
}

#[tokio::test]
async fn block_keeps_the_key_until_the_failed_head_is_retried_and_delivered() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    // The head fails until the test lets it through.
    let head_ok = Arc::new(AtomicBool::new(false));
    let flag = head_ok.clone();
    receiver.set_fallback(Route::new(move |d: &Delivery<'_>| {
        let body: Value = serde_json::from_slice(d.body).unwrap_or_default();
        if body["ordering"]["sequence"] == 1 && !flag.load(AtomicOrdering::SeqCst) {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    }));
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({
            "ordering": {"key": "/callId", "onStuck": "block", "maxHoldSeconds": 1},
            "retryConfig": fast_retries(2),
        }),
    )
    .await;
    let base = app.url("");
    let head = publish(&app, &base, json!({"callId": "A", "n": 1}), None).await;
    publish(&app, &base, json!({"callId": "A", "n": 2}), None).await;
    publish(&app, &base, json!({"callId": "A", "n": 3}), None).await;
    let _worker = app.start_worker().await;
    let failed = wait_deliveries(&app, config, "head failed", |d| d[0].1 == "failed").await;
    assert_eq!(
        failed
            .iter()
            .map(|d| (d.1.as_str(), d.2))
            .collect::<Vec<_>>(),
        [("failed", false), ("pending", true), ("pending", true)],
        "the head failed for good and the key stays blocked"
    );
    // The sweep leaves a blocked key alone, and counts it once it has held for maxHoldSeconds.
    let deadline = Instant::now() + WAIT;
    loop {
        wirehook_core::queue::ordered::sweep(&app.db)
            .await
            .expect("sweep");
        let (blocked, _) = wirehook_core::queue::ordered::blocked(&app.db)
            .await
            .expect("blocked");
        if blocked == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the key never counted as blocked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = deliveries(&app, config).await;
    assert!(still[1].2 && still[2].2, "still waiting: {still:?}");

    // An operator retries the head once the receiver is fixed: it goes, then the others.
    head_ok.store(true, AtomicOrdering::SeqCst);
    let outbound = deliveries(&app, config).await;
    let (status, json) = app
        .post(
            &format!("/api/webhooks/events/{}/retry", outbound[0].0),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    wait_deliveries(&app, config, "all delivered", all_delivered(3)).await;
    let ns: Vec<Value> = first_successes(&receiver.received())
        .iter()
        .map(|b| b["data"]["n"].clone())
        .collect();
    assert_eq!(ns, [json!(1), json!(2), json!(3)]);
    assert!(head > 0);
}

#[tokio::test]
async fn skipping_a_blocked_head_lets_the_next_go_and_a_manual_retry_bypasses_ordering() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    let head_ok = Arc::new(AtomicBool::new(false));
    let flag = head_ok.clone();
    receiver.set_fallback(Route::new(move |d: &Delivery<'_>| {
        let body: Value = serde_json::from_slice(d.body).unwrap_or_default();
        if body["data"]["n"] == 1 && !flag.load(AtomicOrdering::SeqCst) {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    }));
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({
            "ordering": {"key": "/callId", "onStuck": "block"},
            "retryConfig": fast_retries(50),
        }),
    )
    .await;
    let base = app.url("");
    for n in 1..=2 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    let _worker = app.start_worker().await;
    // The head is pending and retrying; the second waits.
    let first = wait_deliveries(&app, config, "head attempted", |d| d.len() == 2 && d[1].2).await;
    receiver.wait_for(1, WAIT).await;
    let (status, json) = app
        .post(
            &format!("/api/webhooks/events/{}/skip", first[0].0),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["event"]["status"], "cancelled");
    let after = wait_deliveries(&app, config, "next delivered", |d| d[1].1 == "delivered").await;
    assert_eq!(after[0].1, "cancelled");
    let second = first_successes(&receiver.received());
    assert_eq!(second[0]["data"]["n"], 2);
    assert_eq!(second[0]["ordering"]["sequence"], 2, "the gap shows");

    // Skipping again is refused; so is skipping an unordered or delivered event.
    let (status, json) = app
        .post(
            &format!("/api/webhooks/events/{}/skip", first[0].0),
            json!({}),
        )
        .await;
    assert_eq!((status, error_code(&json)), (409, "conflict".to_owned()));
    let (status, json) = app
        .post(
            &format!("/api/webhooks/events/{}/skip", after[1].0),
            json!({}),
        )
        .await;
    assert_eq!((status, error_code(&json)), (409, "conflict".to_owned()));
    let (status, _) = app
        .post("/api/webhooks/events/999999/skip", json!({}))
        .await;
    assert_eq!(status, 404);

    // A manual retry of the skipped head goes although its key moved on.
    head_ok.store(true, AtomicOrdering::SeqCst);
    let (status, json) = app
        .post(
            &format!("/api/webhooks/events/{}/retry", first[0].0),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    wait_deliveries(&app, config, "retried head delivered", all_delivered(2)).await;
    let late = first_successes(&receiver.received());
    assert_eq!(late.len(), 2);
    assert_eq!(late[1]["data"]["n"], 1, "the retried head arrives last");
}

#[tokio::test]
async fn detach_lets_the_next_event_go_after_max_hold_and_the_head_arrives_late() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    // The head fails until the event after it was delivered: only a detach can get it there.
    let second_delivered = Arc::new(AtomicBool::new(false));
    let flag = second_delivered.clone();
    receiver.set_fallback(Route::new(move |d: &Delivery<'_>| {
        let body: Value = serde_json::from_slice(d.body).unwrap_or_default();
        match body["data"]["n"].as_u64() {
            Some(1) if !flag.load(AtomicOrdering::SeqCst) => Reply::Status(500),
            Some(2) => {
                flag.store(true, AtomicOrdering::SeqCst);
                Reply::Status(200)
            }
            _ => Reply::Status(200),
        }
    }));
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId", "maxHoldSeconds": 1}}),
    )
    .await;
    let fetched = app.get(&format!("/api/webhooks/config/{config}")).await.1;
    assert_eq!(
        fetched["webhook"]["ordering"],
        json!({"key": "/callId", "onStuck": "detach", "maxHoldSeconds": 1})
    );
    let base = app.url("");
    for n in 1..=3 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    let _worker = app.start_worker().await;
    wait_deliveries(&app, config, "all delivered", all_delivered(3)).await;
    let ns: Vec<Value> = first_successes(&receiver.received())
        .iter()
        .map(|b| b["data"]["n"].clone())
        .collect();
    assert_eq!(ns[0], 2, "the second went while the head was stuck: {ns:?}");
    assert!(ns.contains(&json!(1)), "the head still arrived: {ns:?}");
}

#[tokio::test]
async fn a_head_that_fails_for_good_under_detach_releases_the_next() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    receiver.set_fallback(Route::new(|d: &Delivery<'_>| {
        let body: Value = serde_json::from_slice(d.body).unwrap_or_default();
        if body["data"]["n"] == 1 {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    }));
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId"}, "retryConfig": fast_retries(1)}),
    )
    .await;
    let base = app.url("");
    for n in 1..=2 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    let _worker = app.start_worker().await;
    let done = wait_deliveries(&app, config, "settled", |d| {
        d.len() == 2 && d[0].1 == "failed" && d[1].1 == "delivered"
    })
    .await;
    assert!(!done[1].2);
}

#[tokio::test]
async fn deactivating_or_deleting_cancels_heads_and_waiting_events_and_reactivation_resumes() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::always(Reply::Status(500))
        .await
        .expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({
            "ordering": {"key": "/callId", "onStuck": "block"},
            "retryConfig": {"maxAttempts": 5, "initialDelay": 3600, "maxDelay": 3600, "backoffFactor": 1},
        }),
    )
    .await;
    let base = app.url("");
    for n in 1..=3 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    let _worker = app.start_worker().await;
    wait_deliveries(&app, config, "head retry scheduled", |d| {
        d.len() == 3 && !d[0].2 && d[1].2
    })
    .await;
    receiver.wait_for(1, WAIT).await;
    let (status, json) = app
        .put(
            &format!("/api/webhooks/config/{config}"),
            json!({"status": "inactive"}),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let cancelled = deliveries(&app, config).await;
    assert!(
        cancelled.iter().all(|d| d.1 == "cancelled" && !d.2),
        "{cancelled:?}"
    );

    // Back on: a new event of the same key goes (the sweep idles the key of the cancelled head).
    receiver.set_fallback(Route::ok());
    let (status, json) = app
        .put(
            &format!("/api/webhooks/config/{config}"),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    publish(&app, &base, json!({"callId": "A", "n": 4}), None).await;
    wait_deliveries(&app, config, "new event delivered", |d| {
        d.len() == 4 && d[3].1 == "delivered"
    })
    .await;

    // Deleting cancels what waits, too.
    let hold = receiver.hold();
    for n in 5..=6 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    wait_deliveries(&app, config, "second waits", |d| d.len() == 6 && d[5].2).await;
    let (status, _) = app.delete(&format!("/api/webhooks/config/{config}")).await;
    assert_eq!(status, 200);
    drop(hold);
    let gone = deliveries(&app, config).await;
    assert_eq!(gone[5].1, "cancelled");
    assert!(!gone[5].2);
}

#[tokio::test]
async fn an_event_without_the_key_goes_unordered_and_a_publisher_key_overrides_the_pointer() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId"}}),
    )
    .await;
    let base = app.url("");
    publish(&app, &base, json!({"n": 1}), None).await;
    publish(&app, &base, json!({"callId": "A", "n": 2}), Some("shared")).await;
    publish(&app, &base, json!({"callId": "B", "n": 3}), Some("shared")).await;
    let _worker = app.start_worker().await;
    wait_deliveries(&app, config, "delivered", all_delivered(3)).await;
    let bodies: HashMap<u64, Value> = first_successes(&receiver.received())
        .into_iter()
        .map(|b| (b["data"]["n"].as_u64().expect("n"), b))
        .collect();
    assert!(bodies[&1].get("ordering").is_none(), "{}", bodies[&1]);
    assert_eq!(bodies[&2]["ordering"]["key"], "shared");
    assert_eq!(bodies[&3]["ordering"]["key"], "shared");
    assert_eq!(bodies[&3]["ordering"]["sequence"], 2);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("wirehook_ordered_missing_key_total"),
        "the missing key is counted"
    );
}

#[tokio::test]
async fn the_test_endpoint_bypasses_ordering() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId", "onStuck": "block"}}),
    )
    .await;
    let (status, json) = app
        .post(
            &format!("/api/webhooks/config/{config}/test"),
            json!({"eventType": "call.completed"}),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["details"]["delivered"], true);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert!(body(&got[0]).get("ordering").is_none());
}

#[tokio::test]
async fn ordering_is_validated_shown_and_removable() {
    let app = TestApp::spawn().await;
    for key in ["callId", "", "/", "/a//b", "/a~2"] {
        let mut body = crate::common::example_config();
        body["ordering"] = json!({"key": key});
        let (status, json) = app.post("/api/webhooks/config", body).await;
        assert_eq!(status, 400, "{key}: {json}");
        assert_eq!(error_code(&json), "validation_failed");
    }
    let mut body = crate::common::example_config();
    body["ordering"] = json!({"key": "/callId", "maxHoldSeconds": 0});
    let (status, _) = app.post("/api/webhooks/config", body).await;
    assert_eq!(status, 400);

    let created = app
        .create_config(json!({"ordering": {"key": "/callId", "onStuck": "block"}}))
        .await;
    assert_eq!(
        created["ordering"],
        json!({"key": "/callId", "onStuck": "block", "maxHoldSeconds": 300})
    );
    let id = created["id"].as_i64().expect("id");
    let listed = app.get("/api/webhooks/config").await.1;
    assert_eq!(listed["webhooks"][0]["ordering"]["key"], "/callId");
    let (status, json) = app
        .put(
            &format!("/api/webhooks/config/{id}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        json["webhook"]["ordering"]["onStuck"], "block",
        "kept when omitted"
    );
    let (status, json) = app
        .put(
            &format!("/api/webhooks/config/{id}"),
            json!({"ordering": null}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(json["webhook"].get("ordering").is_none(), "{json}");
    let plain = app.create_config(json!({})).await;
    assert!(plain.get("ordering").is_none());
}

#[tokio::test]
async fn the_sweep_releases_a_key_whose_head_settled_without_releasing_it() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId"}}),
    )
    .await;
    let base = app.url("");
    for n in 1..=3 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    // What a settle outside the engine's record leaves (a job that found the configuration
    // inactive, an operator's SQL): the head final, its key still held by it.
    let head = deliveries(&app, config).await[0].0;
    app.db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE webhook_events SET status = 'cancelled' WHERE id = $1",
            [head.into()],
        ))
        .await
        .expect("settle the head behind the engine's back");
    // The replica's maintenance leader sweeps every second.
    let _worker = app.start_worker().await;
    let done = wait_deliveries(&app, config, "released by the sweep", |d| {
        d.len() == 3 && d[1].1 == "delivered" && d[2].1 == "delivered"
    })
    .await;
    assert_eq!(done[0].1, "cancelled");
    let ns: Vec<Value> = first_successes(&receiver.received())
        .iter()
        .map(|b| b["data"]["n"].clone())
        .collect();
    assert_eq!(ns, [json!(2), json!(3)]);
}

#[tokio::test]
async fn the_failing_endpoint_sweep_never_wakes_an_event_waiting_on_its_key() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId"}}),
    )
    .await;
    let base = app.url("");
    for n in 1..=3 {
        publish(&app, &base, json!({"callId": "A", "n": n}), None).await;
    }
    let jobs = || async {
        app.db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM apalis.jobs",
            ))
            .await
            .expect("jobs")
            .expect("row")
            .try_get::<i64>("", "n")
            .expect("n")
    };
    assert_eq!(jobs().await, 1);
    // A failing endpoint whose probe is overdue: the sweep wakes its oldest parked delivery;
    // then a recovered one: the sweep wakes them all. Neither is an event waiting on its key.
    for failing in ["now() - interval '1 hour'", "NULL"] {
        app.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "UPDATE webhook_configs SET failing_since = {failing}, probe_until = NULL \
                     WHERE id = $1"
                ),
                [config.into()],
            ))
            .await
            .expect("set the endpoint's health");
        let swept = wirehook_core::queue::parked::sweep(&app.db)
            .await
            .expect("sweep");
        assert_eq!(swept.woken, 0, "{swept:?}");
        let now = deliveries(&app, config).await;
        assert!(now[1].2 && now[2].2, "{now:?}");
        assert_eq!(jobs().await, 1);
    }
}

#[tokio::test]
async fn concurrent_publishes_of_one_key_through_two_apis_get_one_unbroken_chain() {
    const EVENTS: usize = 60;
    let app = TestApp::spawn().await;
    let second_api = app.start_api_replica().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let config = ordered_config(
        &app,
        &receiver,
        "/c",
        json!({"ordering": {"key": "/callId"}}),
    )
    .await;
    let apis = [app.url(""), second_api];
    let publishes = (0..EVENTS).map(|i| {
        let (app, apis) = (&app, &apis);
        async move { publish(app, &apis[i % 2], json!({"callId": "K", "i": i}), None).await }
    });
    futures::future::join_all(publishes).await;
    let rows = app
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, message_id, ordering_seq, ordering_previous, waiting_on_key \
             FROM webhook_events WHERE webhook_config_id = $1 ORDER BY ordering_seq",
            [config.into()],
        ))
        .await
        .expect("rows");
    assert_eq!(rows.len(), EVENTS);
    let mut previous: Option<String> = None;
    let mut last_id = 0i64;
    for (n, row) in rows.iter().enumerate() {
        let seq: i64 = row.try_get("", "ordering_seq").expect("seq");
        let id: i64 = row.try_get("", "id").expect("id");
        let message_id: String = row.try_get("", "message_id").expect("message id");
        let linked: Option<String> = row.try_get("", "ordering_previous").expect("previous");
        let waiting: bool = row.try_get("", "waiting_on_key").expect("waiting");
        assert_eq!(seq, n as i64 + 1, "sequences have no gap");
        assert_eq!(
            linked, previous,
            "sequence {seq} links to the one before it"
        );
        assert!(id > last_id, "ids grow with sequences");
        assert_eq!(waiting, n > 0, "only the first holds the key");
        previous = Some(message_id);
        last_id = id;
    }
    let _worker = app.start_worker().await;
    wait_deliveries(&app, config, "delivered", all_delivered(EVENTS)).await;
}
