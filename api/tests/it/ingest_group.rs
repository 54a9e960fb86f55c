//! The group commit behind inbound and published events: several events recorded in one
//! transaction keep the outcome each would have had alone.

use entity::{EventType, Source, webhook_events};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use serde_json::{Value, json};
use wirehook_api::ingest::{Disposition, Received, Recorded, record_batch};
use wirehook_core::job::DeliveryJob;

use crate::common::TestApp;

fn received(event_type: EventType, key: &str, payload: Value) -> Received {
    Received {
        source: Source::SignalWire,
        disposition: Disposition::Deliver(event_type),
        payload,
        provider_payload: Some(json!({"raw": true})),
        dedupe_key: Some(key.to_owned()),
        client_ip: Some("127.0.0.1".to_owned()),
        ordering_key: None,
    }
}

async fn config(app: &TestApp, types: Value, filters: Value) -> i64 {
    app.create_config(
        json!({"url": "http://127.0.0.1:9/hook", "eventTypes": types, "filters": filters}),
    )
    .await["id"]
        .as_i64()
        .expect("id")
}

async fn deliveries_of(app: &TestApp, parent: i64) -> Vec<webhook_events::Model> {
    webhook_events::Entity::find()
        .filter(webhook_events::Column::ParentEventId.eq(parent))
        .all(&app.db)
        .await
        .expect("deliveries")
}

fn recorded(outcome: Result<Recorded, sea_orm::DbErr>) -> Recorded {
    outcome.expect("recorded")
}

/// Records `batch` together; every event must be recorded.
async fn record_all(app: &TestApp, batch: Vec<Received>) -> Vec<Recorded> {
    record_batch(&app.db, batch)
        .await
        .expect("batch")
        .into_iter()
        .map(recorded)
        .collect()
}

/// Records one `call.completed` under `key` in a batch of its own.
async fn record_one(app: &TestApp, key: &str) -> Recorded {
    let mut out = record_all(
        app,
        vec![received(EventType::CallCompleted, key, json!({}))],
    )
    .await;
    out.pop().expect("one")
}

#[tokio::test]
async fn each_event_of_a_batch_fans_out_to_its_own_matching_configurations() {
    let app = TestApp::spawn().await;
    let calls = config(&app, json!(["call.completed"]), json!({"campaigns": ["A"]})).await;
    let voice = config(&app, json!(["voice.completed"]), json!({})).await;
    let batch = vec![
        received(EventType::CallCompleted, "k1", json!({"campaignId": "A"})),
        received(EventType::CallCompleted, "k2", json!({"campaignId": "B"})),
        received(EventType::VoiceCompleted, "k3", json!({})),
        Received {
            disposition: Disposition::Ignore {
                provider_type: "something.else".into(),
            },
            ..received(EventType::CallCompleted, "k4", json!({}))
        },
    ];
    let out = record_all(&app, batch).await;
    assert_eq!(
        out.iter().map(|r| r.deliveries).collect::<Vec<_>>(),
        [1, 0, 1, 0]
    );
    assert!(out.iter().all(|r| !r.duplicate));
    let first = deliveries_of(&app, out[0].event.id).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].webhook_config_id, Some(calls));
    let third = deliveries_of(&app, out[2].event.id).await;
    assert_eq!(third[0].webhook_config_id, Some(voice));
    assert_eq!(out[3].event.status, entity::EventStatus::Ignored);
}

#[tokio::test]
async fn each_event_of_a_batch_gets_its_own_row_and_payload() {
    let app = TestApp::spawn().await;
    let batch = vec![
        received(EventType::CallCompleted, "k1", json!({"n": 1})),
        received(EventType::CallCompleted, "k2", json!({"n": 2})),
    ];
    let out = record_all(&app, batch).await;
    assert_ne!(out[0].event.id, out[1].event.id);
    assert_eq!(out[0].event.payload, json!({"n": 1}));
    assert_eq!(out[1].event.payload, json!({"n": 2}));
    assert_eq!(out[1].event.dedupe_key.as_deref(), Some("k2"));
    assert_eq!(out[1].event.provider_payload, Some(json!({"raw": true})));
}

#[tokio::test]
async fn the_same_key_twice_in_one_batch_is_recorded_and_fanned_out_once() {
    let app = TestApp::spawn().await;
    config(&app, json!(["call.completed"]), json!({})).await;
    let one = received(EventType::CallCompleted, "same", json!({}));
    let out = record_all(&app, vec![one.clone(), one]).await;
    assert_eq!(out.iter().filter(|r| r.duplicate).count(), 1);
    assert_eq!(out[0].event.id, out[1].event.id);
    assert_eq!(out.iter().map(|r| r.deliveries).sum::<usize>(), 1);
    assert_eq!(deliveries_of(&app, out[0].event.id).await.len(), 1);
}

#[tokio::test]
async fn a_key_recorded_by_an_earlier_batch_is_a_duplicate_with_the_first_event() {
    let app = TestApp::spawn().await;
    let first = record_one(&app, "k").await;
    let again = record_all(
        &app,
        vec![
            received(EventType::CallCompleted, "other", json!({})),
            received(EventType::CallCompleted, "k", json!({})),
        ],
    )
    .await;
    assert!(!again[0].duplicate);
    assert!(again[1].duplicate);
    assert_eq!(again[1].event.id, first.event.id);
}

#[tokio::test]
async fn an_event_the_database_refuses_fails_alone() {
    let app = TestApp::spawn().await;
    config(&app, json!(["call.completed"]), json!({})).await;
    // PostgreSQL's jsonb cannot hold U+0000: the batch statement fails as a whole.
    let bad = received(EventType::CallCompleted, "bad", json!({"text": "a\u{0}b"}));
    let out = record_batch(
        &app.db,
        vec![
            received(EventType::CallCompleted, "good-1", json!({})),
            bad,
            received(EventType::CallCompleted, "good-2", json!({})),
        ],
    )
    .await
    .expect("no connection failure");
    assert!(out[1].is_err());
    for good in [&out[0], &out[2]] {
        let good = good.as_ref().expect("recorded");
        assert_eq!(good.deliveries, 1);
        assert_eq!(deliveries_of(&app, good.event.id).await.len(), 1);
    }
    let bad_rows = webhook_events::Entity::find()
        .filter(webhook_events::Column::DedupeKey.eq("bad"))
        .all(&app.db)
        .await
        .expect("query");
    assert!(bad_rows.is_empty());
}

/// The stored job payloads of the database, decoded as the worker decodes them.
async fn stored_jobs(app: &TestApp) -> Vec<DeliveryJob> {
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT convert_from(job, 'UTF8') AS job FROM apalis.jobs ORDER BY id",
        ))
        .await
        .expect("jobs");
    rows.iter()
        .map(|row| {
            let text: String = row.try_get("", "job").expect("job text");
            let value = serde_json::from_str(&text).expect("job JSON");
            DeliveryJob::from_payload(value).expect("a delivery job")
        })
        .collect()
}

#[tokio::test]
async fn a_batch_queues_its_deliveries_sixteen_to_a_job_in_the_workers_format() {
    let app = TestApp::spawn().await;
    config(&app, json!(["call.completed"]), json!({})).await;
    let batch = (0..20)
        .map(|i| received(EventType::CallCompleted, &format!("k{i}"), json!({})))
        .collect();
    let mut expected = Vec::new();
    for recorded in record_all(&app, batch).await {
        expected.extend(
            deliveries_of(&app, recorded.event.id)
                .await
                .iter()
                .map(|d| d.id),
        );
    }
    let jobs = stored_jobs(&app).await;
    let mut sizes: Vec<usize> = jobs.iter().map(|j| j.event_ids().len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [4, 16]);
    let mut queued: Vec<i64> = jobs
        .iter()
        .flat_map(|j| j.event_ids().iter().map(|id| id.0))
        .collect();
    queued.sort_unstable();
    expected.sort_unstable();
    assert_eq!(queued, expected);
}

#[tokio::test]
async fn a_lone_delivery_is_queued_as_a_version_1_job() {
    let app = TestApp::spawn().await;
    config(&app, json!(["call.completed"]), json!({})).await;
    let parent = record_one(&app, "k").await.event.id;
    let delivery = deliveries_of(&app, parent).await[0].id;
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT convert_from(job, 'UTF8')::jsonb AS job FROM apalis.jobs",
        ))
        .await
        .expect("query")
        .expect("one job");
    let job: Value = row.try_get("", "job").expect("job");
    assert_eq!(job, json!({"v": 1, "event_id": delivery}));
}

#[tokio::test]
async fn an_inactive_configuration_gets_no_delivery() {
    let app = TestApp::spawn().await;
    let id = config(&app, json!(["call.completed"]), json!({})).await;
    let (status, body) = app
        .put(
            &format!("/api/webhooks/config/{id}"),
            json!({"status": "inactive"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let recorded = record_one(&app, "k").await;
    assert_eq!(recorded.deliveries, 0);
    assert!(deliveries_of(&app, recorded.event.id).await.is_empty());
    assert!(stored_jobs(&app).await.is_empty());
}

#[tokio::test]
async fn the_warm_up_leaves_the_group_commit_planned_on_every_connection_it_warms() {
    use sea_orm::TransactionTrait;
    use wirehook_api::ingest::{WARM_CONNECTIONS, warm_up};
    use wirehook_core::queue::fan_out;

    let app = TestApp::spawn().await;
    let pool = u32::try_from(WARM_CONNECTIONS).expect("a few connections");
    // A pool of exactly as many connections as the warm-up takes, so each is one it warmed.
    let db = wirehook_core::process::connect(app.database_url(), pool)
        .await
        .expect("connect like the api");
    warm_up(&db).await.expect("warm up");

    let mut held = Vec::new();
    for _ in 0..WARM_CONNECTIONS {
        held.push(db.begin().await.expect("a connection of the pool"));
    }
    for ordered in [false, true] {
        let sql = fan_out::statement("[]".into(), "[]".into(), 0, ordered).sql;
        for tx in &held {
            let row = tx
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT generic_plans FROM pg_prepared_statements WHERE statement = $1",
                    [sql.clone().into()],
                ))
                .await
                .expect("read the connection's prepared statements")
                .expect("the group commit's statement is prepared on this connection");
            let generic: i64 = row.try_get("", "generic_plans").expect("generic_plans");
            // Planned for good: later runs reuse the generic plan instead of planning again.
            assert!(generic >= 1, "ordered: {ordered}, generic plans: {generic}");
        }
    }
}
