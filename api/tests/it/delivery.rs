//! Queued deliveries through the real worker runtime (apalis on PostgreSQL) to real receivers.

use std::time::Duration;

use serde_json::{Value, json};
use wirehook_core::queue::{self, NewDelivery};
use wirehook_testkit::receiver::{Arrival, Receiver, Reply};

use crate::common::{TestApp, error_code};

const WAIT: Duration = Duration::from_secs(15);

/// Creates a config for `receiver` with a fast retry policy and enqueues one event to it.
async fn enqueue_one(app: &TestApp, receiver: &Receiver, retry: Value) -> (i64, i64) {
    let config = app
        .create_config(
            json!({"url": receiver.url("/hooks"), "filters": null, "retryConfig": retry}),
        )
        .await;
    let config_id = config["id"].as_i64().expect("id");
    let created = queue::enqueue(
        &app.db,
        vec![NewDelivery {
            config_id: entity::ConfigId(config_id),
            source: entity::Source::Platform,
            event_type: "call.completed".into(),
            payload: json!({"callId": "CA123", "status": "completed"}),
            parent_event_id: None,
        }],
    )
    .await
    .expect("enqueue");
    (config_id, created[0].event_id.0)
}

async fn event(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/webhooks/events/{id}")).await.1
}

/// Polls the event until its status is `status`.
async fn wait_status(app: &TestApp, id: i64, status: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let e = event(app, id).await;
        if e["event"]["status"] == status || std::time::Instant::now() > deadline {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gaps(received: &[Arrival]) -> Vec<f64> {
    received
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect()
}

#[tokio::test]
async fn failures_retry_until_delivered_with_the_same_message_id() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::scripted(
        vec![Reply::Status(500), Reply::Status(500)],
        Reply::Status(200),
    )
    .await
    .expect("receiver");
    let retry = json!({"maxAttempts": 5, "initialDelay": 1, "maxDelay": 5, "backoffFactor": 1});
    let (_, id) = enqueue_one(&app, &receiver, retry).await;
    let details = wait_status(&app, id, "delivered").await;
    assert_eq!(details["event"]["status"], "delivered", "{details}");
    assert_eq!(details["event"]["attempts"], 3);
    let codes: Vec<&Value> = details["deliveryAttempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| &a["statusCode"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)]);
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let ids: Vec<&String> = got.iter().map(|r| &r.headers["webhook-id"]).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(
        ids[0],
        details["event"]["messageId"].as_str().expect("messageId")
    );
}

#[tokio::test]
async fn an_always_failing_receiver_ends_failed_after_max_attempts() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::always(Reply::Status(500))
        .await
        .expect("receiver");
    let retry = json!({"maxAttempts": 3, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1});
    let (_, id) = enqueue_one(&app, &receiver, retry).await;
    let details = wait_status(&app, id, "failed").await;
    assert_eq!(details["event"]["status"], "failed", "{details}");
    assert_eq!(details["event"]["attempts"], 3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        receiver.received().len(),
        3,
        "no request after the last attempt"
    );
}

#[tokio::test]
async fn backoff_delays_follow_the_schedule_within_jitter() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::always(Reply::Status(503))
        .await
        .expect("receiver");
    let retry = json!({"maxAttempts": 3, "initialDelay": 1, "maxDelay": 60, "backoffFactor": 2});
    let (_, id) = enqueue_one(&app, &receiver, retry).await;
    wait_status(&app, id, "failed").await;
    let gaps = gaps(&receiver.received());
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    // ±20% jitter, plus the worker's poll interval and an attempt's own time as slack.
    for (gap, expected) in gaps.iter().zip([1.0, 2.0]) {
        assert!(
            *gap >= expected * 0.8 && *gap <= expected * 1.2 + 0.4,
            "gap {gap:.2}s for {expected}s"
        );
    }
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::scripted(
        vec![Reply::Hang(Duration::from_secs(3))],
        Reply::Status(200),
    )
    .await
    .expect("receiver");
    let retry = json!({"maxAttempts": 3, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1});
    let (_, id) = enqueue_one(&app, &receiver, retry).await;
    let details = wait_status(&app, id, "delivered").await;
    assert_eq!(details["event"]["status"], "delivered", "{details}");
    assert_eq!(details["deliveryAttempts"][0]["errorKind"], "timeout");
    assert_eq!(details["event"]["attempts"], 2);
}

#[tokio::test]
async fn gone_fails_the_event_and_disables_the_configuration() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::scripted(vec![Reply::Status(410)], Reply::Status(200))
        .await
        .expect("receiver");
    let retry = json!({"maxAttempts": 5, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1});
    let (config_id, id) = enqueue_one(&app, &receiver, retry).await;
    let details = wait_status(&app, id, "failed").await;
    assert_eq!(details["event"]["status"], "failed");
    let (_, config) = app.get(&format!("/api/webhooks/config/{config_id}")).await;
    assert_eq!(config["webhook"]["status"], "disabled");
    assert!(
        config["webhook"]["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("410"))
    );
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::scripted(vec![Reply::RetryAfter(429, 2)], Reply::Status(200))
        .await
        .expect("receiver");
    let retry = json!({"maxAttempts": 3, "initialDelay": 1, "maxDelay": 60, "backoffFactor": 1});
    let (_, id) = enqueue_one(&app, &receiver, retry).await;
    wait_status(&app, id, "delivered").await;
    let gaps = gaps(&receiver.received());
    assert!(
        gaps.len() == 1 && gaps[0] >= 2.0 && gaps[0] <= 2.8,
        "{gaps:?}"
    );
}

#[tokio::test]
async fn manual_retry_after_failure_delivers() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200))
        .await
        .expect("receiver");
    let retry = json!({"maxAttempts": 1, "initialDelay": 1, "maxDelay": 1, "backoffFactor": 1});
    let (_, id) = enqueue_one(&app, &receiver, retry).await;
    assert_eq!(
        wait_status(&app, id, "failed").await["event"]["attempts"],
        1
    );
    let (status, body) = app
        .post(&format!("/api/webhooks/events/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Webhook delivery retry queued");
    assert_eq!(body["event"]["status"], "pending");
    assert_eq!(body["event"]["attempts"], 1);
    let details = wait_status(&app, id, "delivered").await;
    assert_eq!(details["event"]["attempts"], 2);
}

#[tokio::test]
async fn deleting_the_configuration_stops_queued_retries() {
    let app = TestApp::spawn().await;
    let _worker = app.start_worker().await;
    let receiver = Receiver::always(Reply::Status(500))
        .await
        .expect("receiver");
    let retry = json!({"maxAttempts": 5, "initialDelay": 2, "maxDelay": 2, "backoffFactor": 1});
    let (config_id, id) = enqueue_one(&app, &receiver, retry).await;
    receiver.wait_for(1, WAIT).await;
    let (status, _) = app
        .delete(&format!("/api/webhooks/config/{config_id}"))
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(event(&app, id).await["event"]["status"], "cancelled");
}

#[tokio::test]
async fn retry_refuses_what_cannot_be_retried() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (_, pending) = enqueue_one(&app, &receiver, json!({})).await;
    let inbound = app
        .insert_event(crate::common::NewEvent::inbound("call.completed"))
        .await;
    for (id, expected) in [(pending, 409), (inbound, 409), (999_999, 404)] {
        let (status, body) = app
            .post(&format!("/api/webhooks/events/{id}/retry"), json!({}))
            .await;
        assert_eq!(status, expected, "{id}: {body}");
        error_code(&body);
    }
}

fn engine(app: &TestApp) -> wirehook_core::engine::Engine {
    let client =
        wirehook_core::http_client::DeliveryClient::new(wirehook_core::http_client::ClientConfig {
            timeout: Duration::from_secs(2),
            allow_private_targets: true,
            user_agent: "wirehook-tests".into(),
        })
        .expect("client");
    wirehook_core::engine::Engine::new(
        app.db.clone(),
        client,
        std::sync::Arc::new(wirehook_core::secrets::Keyring::development()),
    )
}

#[tokio::test]
async fn concurrent_jobs_of_one_event_record_a_single_outcome() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (_, id) = enqueue_one(&app, &receiver, json!({})).await;
    let engine = engine(&app);
    let job = wirehook_core::job::DeliveryJob::new(entity::EventId(id));
    let runs = futures::future::join_all((0..4).map(|_| engine.run_job(&job))).await;
    assert!(runs.iter().all(Result::is_ok), "{runs:?}");
    let details = event(&app, id).await;
    assert_eq!(details["event"]["status"], "delivered", "{details}");
    assert_eq!(
        details["event"]["attempts"], 1,
        "only one job's outcome counts"
    );
    let sent = receiver.received().len();
    let recorded = details["deliveryAttempts"].as_array().map_or(0, Vec::len);
    assert!(sent >= 1, "delivered at least once");
    assert_eq!(
        recorded, sent,
        "every request that was sent is an attempt row"
    );
}

#[tokio::test]
async fn many_concurrent_jobs_of_many_events_record_each_delivery_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let config = app
        .create_config(json!({"url": receiver.url("/hooks"), "filters": null}))
        .await;
    let config_id = config["id"].as_i64().expect("id");
    let deliveries = (0..300)
        .map(|i| NewDelivery {
            config_id: entity::ConfigId(config_id),
            source: entity::Source::Platform,
            event_type: "call.completed".into(),
            payload: json!({"callId": format!("CA{i}")}),
            parent_event_id: None,
        })
        .collect();
    let created = queue::insert_events(&app.db, deliveries)
        .await
        .expect("insert");
    let engine = engine(&app);
    let jobs: Vec<_> = created
        .chunks(wirehook_core::job::MAX_EVENTS_PER_JOB)
        .filter_map(|c| {
            wirehook_core::job::DeliveryJob::batch(c.iter().map(|e| e.event_id).collect())
        })
        .collect();
    let runs = futures::future::join_all(jobs.iter().map(|job| engine.run_job(job))).await;
    assert!(runs.iter().all(Result::is_ok));
    let (_, page) = app
        .get(&format!(
            "/api/webhooks/events?webhookConfigId={config_id}&status=delivered&limit=1"
        ))
        .await;
    assert_eq!(page["total"], 300, "{page}");
    let mut ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    assert_eq!(receiver.received().len(), 300, "no duplicates");
    let (_, one) = app
        .get(&format!("/api/webhooks/events/{}", created[150].event_id))
        .await;
    assert_eq!(one["event"]["attempts"], 1);
    assert_eq!(one["deliveryAttempts"][0]["statusCode"], 200);
}

fn record(event_id: i64, config_id: i64, delivered: bool) -> wirehook_core::store::AttemptRecord {
    let now = chrono::Utc::now();
    wirehook_core::store::AttemptRecord {
        event_id: entity::EventId(event_id),
        config_id: entity::ConfigId(config_id),
        prior_attempts: 0,
        row: wirehook_core::store::AttemptRow {
            event_id: entity::EventId(event_id),
            attempt: 1,
            request_headers: json!({}),
            status_code: Some(if delivered { 200 } else { 500 }),
            response_headers: None,
            response_body: None,
            truncated: false,
            duration_ms: 1,
            error_kind: None,
            error_message: None,
            created_at: now,
        },
        status: if delivered {
            entity::EventStatus::Delivered
        } else {
            entity::EventStatus::Pending
        },
        response_data: json!({"timing": 1}),
        next_attempt_at: (!delivered).then(|| now + chrono::Duration::seconds(60)),
        last_error: None,
        now,
        gone: false,
        // As most concurrent deliveries see it: loaded before the failures recorded meanwhile.
        health: if delivered {
            wirehook_core::store::Health::StillHealthy
        } else {
            wirehook_core::store::Health::Failed { probe: false }
        },
        release: None,
    }
}

#[tokio::test]
async fn a_delivery_recorded_after_a_racing_failure_of_the_same_attempt_still_counts() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (config_id, id) = enqueue_one(&app, &receiver, json!({})).await;
    let failure = vec![record(id, config_id, false)];
    let won = wirehook_core::store::record_batch(&app.db, None, failure)
        .await
        .expect("record the failure");
    assert!(matches!(won.as_slice(), [Ok(true)]));
    let late = vec![record(id, config_id, true)];
    let won = wirehook_core::store::record_batch(&app.db, None, late)
        .await
        .expect("record the delivery");
    assert!(matches!(won.as_slice(), [Ok(true)]), "{won:?}");
    let details = event(&app, id).await;
    assert_eq!(details["event"]["status"], "delivered", "{details}");
    assert_eq!(details["event"]["attempts"], 1);
}

#[tokio::test]
async fn a_delivery_recorded_after_the_event_failed_for_good_marks_it_delivered() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (config_id, id) = enqueue_one(&app, &receiver, json!({})).await;
    let mut last_failure = record(id, config_id, false);
    last_failure.status = entity::EventStatus::Failed;
    last_failure.next_attempt_at = None;
    wirehook_core::store::record_batch(&app.db, None, vec![last_failure])
        .await
        .expect("record the final failure");
    assert_eq!(event(&app, id).await["event"]["status"], "failed");
    let late = vec![record(id, config_id, true)];
    let won = wirehook_core::store::record_batch(&app.db, None, late)
        .await
        .expect("record the delivery of the job's second run");
    assert!(matches!(won.as_slice(), [Ok(true)]), "{won:?}");
    let details = event(&app, id).await;
    assert_eq!(details["event"]["status"], "delivered", "{details}");
}

#[tokio::test]
async fn in_one_batch_the_delivered_record_of_an_event_wins_over_a_failed_one() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (config_id, id) = enqueue_one(&app, &receiver, json!({})).await;
    let batch = vec![record(id, config_id, false), record(id, config_id, true)];
    let won = wirehook_core::store::record_batch(&app.db, None, batch)
        .await
        .expect("record");
    assert!(matches!(won.as_slice(), [Ok(false), Ok(true)]), "{won:?}");
    let details = event(&app, id).await;
    assert_eq!(details["event"]["status"], "delivered", "{details}");
    assert_eq!(
        details["deliveryAttempts"].as_array().map_or(0, Vec::len),
        2
    );
}

#[tokio::test]
async fn a_failure_recorded_after_the_event_moved_on_changes_nothing() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (config_id, id) = enqueue_one(&app, &receiver, json!({})).await;
    let delivered = vec![record(id, config_id, true)];
    wirehook_core::store::record_batch(&app.db, None, delivered)
        .await
        .expect("record the delivery");
    let late = vec![record(id, config_id, false)];
    let won = wirehook_core::store::record_batch(&app.db, None, late)
        .await
        .expect("record the failure");
    assert!(matches!(won.as_slice(), [Ok(false)]), "{won:?}");
    assert_eq!(event(&app, id).await["event"]["status"], "delivered");
}

/// Enqueues `n` events to `config_id`; their ids.
async fn enqueue_to(app: &TestApp, config_id: i64, n: usize) -> Vec<i64> {
    let delivery = NewDelivery {
        config_id: entity::ConfigId(config_id),
        source: entity::Source::Platform,
        event_type: "call.completed".into(),
        payload: json!({"callId": "CA123", "status": "completed"}),
        parent_event_id: None,
    };
    queue::enqueue(&app.db, vec![delivery; n])
        .await
        .expect("enqueue")
        .iter()
        .map(|c| c.event_id.0)
        .collect()
}

/// The configuration's failed attempts in a row (0 when its failing clock is off).
async fn failures_in_a_row(app: &TestApp, config_id: i64) -> i32 {
    use sea_orm::ConnectionTrait;
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT CASE WHEN failing_since IS NULL THEN 0 ELSE failed_attempts END AS n \
             FROM webhook_configs WHERE id = $1",
            [config_id.into()],
        ))
        .await
        .expect("read the configuration")
        .expect("the configuration");
    row.try_get("", "n").expect("n")
}

#[tokio::test]
async fn a_delivery_between_failures_restarts_the_count_though_loaded_before_them() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (config_id, first) = enqueue_one(&app, &receiver, json!({})).await;
    let ids = enqueue_to(&app, config_id, 3).await;
    // Each record is made from the configuration as loaded before any failure, as concurrent
    // deliveries are: the delivery cannot know the failure just before it started the clock.
    let batches = [
        (first, false),
        (ids[0], true),
        (ids[1], false),
        (ids[2], false),
    ];
    for (id, delivered) in batches {
        let won = wirehook_core::store::record_batch(
            &app.db,
            None,
            vec![record(id, config_id, delivered)],
        )
        .await
        .expect("record");
        assert!(matches!(won.as_slice(), [Ok(true)]), "{won:?}");
    }
    assert_eq!(
        failures_in_a_row(&app, config_id).await,
        2,
        "the delivery between them restarted the count: not gated"
    );
}

#[tokio::test]
async fn failures_batched_with_a_delivery_to_the_same_endpoint_are_not_in_a_row() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (config_id, first) = enqueue_one(&app, &receiver, json!({})).await;
    let ids = enqueue_to(&app, config_id, 3).await;
    let batch = vec![
        record(first, config_id, false),
        record(ids[0], config_id, false),
        record(ids[1], config_id, true),
        record(ids[2], config_id, false),
    ];
    let won = wirehook_core::store::record_batch(&app.db, None, batch)
        .await
        .expect("record");
    assert!(won.iter().all(|w| matches!(w, Ok(true))), "{won:?}");
    assert_eq!(failures_in_a_row(&app, config_id).await, 0);
}

#[tokio::test]
async fn failures_in_a_row_count_toward_the_gate() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await.expect("receiver");
    let (config_id, first) = enqueue_one(&app, &receiver, json!({})).await;
    let ids = enqueue_to(&app, config_id, 2).await;
    for id in [first, ids[0], ids[1]] {
        wirehook_core::store::record_batch(&app.db, None, vec![record(id, config_id, false)])
            .await
            .expect("record");
    }
    assert_eq!(
        failures_in_a_row(&app, config_id).await,
        wirehook_core::store::GATE_AFTER_FAILURES
    );
}

#[tokio::test]
async fn the_workers_connections_commit_asynchronously_and_plan_once_for_cached_pages() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let db = wirehook_core::process::connect_worker(app.database_url(), 1)
        .await
        .expect("connect like the worker");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('synchronous_commit') AS commit, \
                    current_setting('random_page_cost') AS page_cost, \
                    current_setting('plan_cache_mode') AS plans",
        ))
        .await
        .expect("read the settings")
        .expect("one row");
    let commit: String = row.try_get("", "commit").expect("commit");
    let page_cost: String = row.try_get("", "page_cost").expect("page_cost");
    let plans: String = row.try_get("", "plans").expect("plans");
    assert_eq!(commit, "off");
    assert_eq!(page_cost, wirehook_core::process::WORKER_RANDOM_PAGE_COST);
    assert_eq!(plans, wirehook_core::process::WORKER_PLAN_CACHE_MODE);
}

#[tokio::test]
async fn the_workers_claim_reads_the_due_jobs_index_with_its_generic_plan() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    // One connection, so the PREPARE and the EXPLAIN below share it.
    let db = wirehook_core::process::connect_worker(app.database_url(), 1)
        .await
        .expect("connect like the worker");
    // A jobs table as a busy replica leaves it: mostly finished jobs, a few due.
    db.execute_unprepared(
        "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, run_at, done_at) \
         SELECT '\\x00'::bytea, 'job-' || n, 'other-queue', \
                CASE WHEN n % 100 = 0 THEN 'Pending' ELSE 'Done' END, 1, now(), now() \
         FROM generate_series(1, 20000) AS n; \
         ANALYZE apalis.jobs",
    )
    .await
    .expect("fill the jobs table");
    let plan = plan_of(
        &db,
        &format!(
            "PREPARE claim(text, text, integer) AS {}",
            wirehook_core::queue::backend::FETCH
        ),
        "EXPLAIN EXECUTE claim('worker', 'deliveries', 16)",
    )
    .await;
    assert!(
        plan.contains("idx_apalis_jobs_fetch_partial"),
        "the claim should read the due jobs' partial index:\n{plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

#[tokio::test]
async fn the_workers_results_find_their_jobs_by_id_not_among_all_the_replicas_jobs() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    // One connection, so the PREPARE and the EXPLAIN below share it.
    let db = wirehook_core::process::connect_worker(app.database_url(), 1)
        .await
        .expect("connect like the worker");
    // A replica that claimed 10,000 jobs the cleanup has not deleted yet, one still running,
    // among 10,000 of a thousand other replicas: with these statistics apalis' own statement
    // read all 10,000 through `idx_apalis_jobs_lock_by` for one result (6.5 ms).
    db.execute_unprepared(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
         SELECT 'worker-' || n, 'deliveries', 'PostgresStorage', '', now() \
         FROM generate_series(0, 1000) AS n; \
         INSERT INTO apalis.jobs (job, id, job_type, status, attempts, run_at, lock_by, done_at) \
         SELECT '\\x00'::bytea, 'job-' || n, 'deliveries', \
                CASE WHEN n = 1 THEN 'Running' ELSE 'Done' END, 1, now(), \
                'worker-' || CASE WHEN n % 2 = 1 THEN 0 ELSE n % 1000 + 1 END, now() \
         FROM generate_series(1, 20000) AS n; \
         ANALYZE apalis.jobs",
    )
    .await
    .expect("fill the jobs table");
    let plan = plan_of(
        &db,
        &format!(
            "PREPARE results(jsonb, text, text[]) AS {}",
            wirehook_core::queue::backend::HANDLE_RESULTS
        ),
        "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE results(\
           '[{\"task_id\": \"job-1\", \"attempt\": 1, \"result\": null, \"status\": \"Done\"}]', \
           'worker-0', ARRAY['job-1'])",
    )
    .await;
    assert!(
        plan.contains("jobs_pkey"),
        "the results should find jobs by id:\n{plan}"
    );
    assert!(!plan.contains("idx_apalis_jobs_lock_by"), "{plan}");
    assert!(!plan.contains("Seq Scan on jobs"), "{plan}");
    let done = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT status FROM apalis.jobs WHERE id = 'job-1'",
        ))
        .await
        .expect("read the job")
        .expect("the job");
    assert_eq!(
        done.try_get::<String>("", "status").expect("status"),
        "Done"
    );
}

/// A connection like a replica's (generic plans), with today's partition full of delivered
/// events and a few pending ones, as mid-day; the pending ids and today's partition name.
async fn a_day_of_events(app: &TestApp) -> (sea_orm::DatabaseConnection, Vec<i64>, String) {
    use sea_orm::ConnectionTrait;
    let db = wirehook_core::process::connect_worker(app.database_url(), 1)
        .await
        .expect("connect like the worker");
    let config = app
        .create_config(json!({"url": "http://127.0.0.1:9/hooks"}))
        .await;
    let config_id = config["id"].as_i64().expect("id");
    db.execute_unprepared(&format!(
        "INSERT INTO webhook_events \
           (message_id, direction, source, event_type, payload, status, attempts, attempt_base, \
            webhook_config_id, next_attempt_at) \
         SELECT 'm-' || n, 'outbound', 'platform', 'call.completed', '{{}}', \
                CASE WHEN n % 500 = 0 THEN 'pending' ELSE 'delivered' END, 0, 0, {config_id}, \
                now() \
         FROM generate_series(1, 20000) AS n; \
         ANALYZE webhook_events"
    ))
    .await
    .expect("fill today's partition");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT id, 'webhook_events_p' || to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD') \
               AS today \
             FROM webhook_events WHERE status = 'pending' ORDER BY id LIMIT 8",
        ))
        .await
        .expect("read pending ids");
    let today: String = rows[0].try_get("", "today").expect("today");
    let ids = rows
        .iter()
        .map(|row| row.try_get::<i64>("", "id").expect("id"))
        .collect();
    (db, ids, today)
}

/// `ids` as an SQL array literal: `'{1,2,3}'`.
fn array_literal(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    format!("'{{{}}}'", ids.join(","))
}

/// The day partitions `plan` reads (scans), by name.
fn partitions_read(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|line| line.contains("Scan") && !line.contains("Function Scan"))
        .filter_map(|line| {
            let at = line.find(" on webhook_events_p")? + " on ".len();
            let name = line[at..].split_whitespace().next()?;
            Some(name.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_workers_record_update_reads_only_its_days_partition_by_primary_key() {
    let app = TestApp::spawn().await;
    let (db, ids, today) = a_day_of_events(&app).await;
    let states: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"id": id, "prior": 0, "attempts": 1, "status": "delivered",
                   "response_data": {"status": 200}, "next_attempt_at": null,
                   "last_error": null, "updated_at": "2026-12-07T12:00:00Z"})
        })
        .collect();
    let plan = plan_of(
        &db,
        &format!(
            "PREPARE record(jsonb, bigint[], text, text, text, bigint, bigint) AS {}",
            wirehook_core::store::RECORD_EVENTS
        ),
        &format!(
            "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE record('{}', {}, 'pending', 'delivered', \
             'failed', {}, {})",
            Value::Array(states),
            array_literal(&ids),
            ids[0],
            ids[ids.len() - 1]
        ),
    )
    .await;
    assert_eq!(partitions_read(&plan), vec![today.clone()], "{plan}");
    assert!(
        plan.contains(&format!(
            "webhook_events_pkey_{}",
            &today["webhook_events_".len()..]
        )),
        "the update should find its events by primary key:\n{plan}"
    );
    assert!(!plan.contains("Bitmap"), "{plan}");
    assert!(plan.contains(&format!("rows={}", ids.len())), "{plan}");
}

#[tokio::test]
async fn the_workers_event_lock_and_load_read_only_their_days_partition() {
    use sea_orm::QueryTrait;
    let app = TestApp::spawn().await;
    let (db, ids, today) = a_day_of_events(&app).await;
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    let array = array_literal(&ids);
    let lock = plan_of(
        &db,
        &format!(
            "PREPARE lock(bigint[], bigint, bigint) AS {}",
            wirehook_core::store::LOCK_EVENTS
        ),
        &format!("EXPLAIN EXECUTE lock({array}, {first}, {last})"),
    )
    .await;
    assert_eq!(partitions_read(&lock), vec![today.clone()], "{lock}");

    let event_ids: Vec<entity::EventId> = ids.iter().map(|&id| entity::EventId(id)).collect();
    let span = wirehook_core::store::IdSpan::of(event_ids.iter().copied()).expect("ids");
    let load =
        wirehook_core::store::load_query(&event_ids, span).build(sea_orm::DbBackend::Postgres);
    let load = plan_of(
        &db,
        &format!("PREPARE load(bigint[], bigint, bigint) AS {}", load.sql),
        &format!("EXPLAIN EXECUTE load({array}, {first}, {last})"),
    )
    .await;
    assert_eq!(partitions_read(&load), vec![today], "{load}");
}

/// The plan `explain` prints for the statement `prepare` prepares, on `db`'s one connection.
async fn plan_of(db: &sea_orm::DatabaseConnection, prepare: &str, explain: &str) -> String {
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(prepare).await.expect("prepare");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            explain,
        ))
        .await
        .expect("explain");
    let lines: Vec<String> = rows
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("a plan line"))
        .collect();
    lines.join("\n")
}
