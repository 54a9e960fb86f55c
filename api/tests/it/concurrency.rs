//! Configuration changes racing the worker. Every writer locks a configuration before its
//! events, and events by id, so deactivating an endpoint while the worker records an attempt
//! for it cannot deadlock; a transaction PostgreSQL still aborts for contention runs again.

use std::time::{Duration, Instant};

use entity::EventStatus;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::json;
use wirehook_testkit::receiver::{Receiver, Reply};

use crate::common::{NewEvent, TestApp};

/// Waits until `n` sessions of the test database are waiting for a row lock.
async fn lock_waiters(app: &TestApp, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = app
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            ))
            .await
            .expect("pg_stat_activity")
            .expect("a row");
        let waiting: i64 = row.try_get("", "n").expect("n");
        if waiting >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of {n} sessions waiting for a lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stages the interleaving that deadlocked: the api holds the configuration and waits for one
/// of its events while the worker, recording a failed attempt of another event of it, needs the
/// configuration. With the lock order the worker waits before it touches any event.
#[tokio::test]
async fn deactivating_while_the_worker_records_an_attempt_neither_deadlocks_nor_loses_it() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::always(Reply::Status(500))
        .await
        .expect("receiver");
    let config = app
        .create_config(json!({
            "url": receiver.url("/hooks"),
            "eventTypes": ["contact.created"],
            "filters": null,
            "retryConfig": {"maxAttempts": 5, "initialDelay": 3600, "maxDelay": 3600}
        }))
        .await;
    let id = config["id"].as_i64().expect("id");
    // First in every scan order the api could use: a queued event no job will deliver.
    let held = app
        .insert_event(NewEvent::outbound(
            "contact.created",
            id,
            EventStatus::Pending,
        ))
        .await;
    let (status, published) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "contact.created", "payload": {"contactId": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{published}");

    // 1. Another session holds the first event, so the deactivation stops after locking the
    //    configuration, before it reaches the published event.
    let blocker = app.db.begin().await.expect("begin");
    blocker
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT id FROM webhook_events WHERE id = {held} FOR NO KEY UPDATE"),
        ))
        .await
        .expect("lock the first event");
    let path = format!("/api/webhooks/config/{id}");
    let deactivate = {
        let url = app.url(&path);
        let request = app.client.put(url).bearer_auth(&app.token);
        tokio::spawn(async move {
            request
                .json(&json!({"status": "inactive"}))
                .send()
                .await
                .expect("PUT")
        })
    };
    lock_waiters(&app, 1).await;

    // 2. The worker sends the published event (500) and, recording the failure, needs the
    //    configuration the api holds.
    let _worker = app.start_worker().await;
    receiver.wait_for(1, Duration::from_secs(30)).await;
    lock_waiters(&app, 2).await;

    // 3. Let the deactivation go on.
    blocker.rollback().await.expect("rollback");
    let answer = deactivate.await.expect("join");
    assert_eq!(answer.status(), 200);

    // The attempt the receiver answered is recorded (a deadlock would have aborted it), and
    // the deactivation cancelled both events.
    let (_, listed) = app
        .get(&format!("/api/webhooks/events?webhookConfigId={id}"))
        .await;
    let event_id = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .find(|e| *e != held)
        .expect("the published event's delivery");
    let deadline = Instant::now() + Duration::from_secs(30);
    let details = loop {
        let (_, details) = app.get(&format!("/api/webhooks/events/{event_id}")).await;
        if details["deliveryAttempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            || Instant::now() > deadline
        {
            break details;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        details["deliveryAttempts"][0]["statusCode"], 500,
        "{details}"
    );
    assert_eq!(details["event"]["status"], "cancelled", "{details}");
    assert_eq!(receiver.received().len(), 1);
    let (_, first) = app.get(&format!("/api/webhooks/events/{held}")).await;
    assert_eq!(first["event"]["status"], "cancelled");
}
