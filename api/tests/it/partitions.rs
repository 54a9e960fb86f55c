//! The history partitioned by creation day: ids that carry their day, queries that read only
//! the days they need, the de-duplication window across days, and the migration that
//! partitions an existing database in place.

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use entity::{EventType, Source};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryOrder, QueryTrait, Statement,
    TransactionTrait,
};
use serde_json::json;
use wirehook_api::ingest::{Disposition, Received, record_batch};
use wirehook_core::partitions;
use wirehook_testkit::legacy;

use crate::common::{POOL, TestApp, fresh_database};

async fn scalar<T: sea_orm::TryGetable>(db: &DatabaseConnection, sql: &str) -> T {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<T>(0)
        .expect("value")
}

/// The plan of `sql` (with `$1` of type `param`) as a prepared statement's custom plan, which
/// PostgreSQL keeps choosing for these lookups: the generic plan of `id = ANY($1)` cannot prune
/// (an array parameter is not a constant), so it costs every day's probe, more than planning.
async fn custom_plan(db: &DatabaseConnection, sql: &str, param: &str, value: &str) -> String {
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
        .await
        .expect("settings");
    txn.execute_unprepared(&format!("PREPARE q({param}) AS {sql}"))
        .await
        .expect("prepare");
    let plan = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN (COSTS OFF) EXECUTE q({value})"),
        ))
        .await
        .expect("explain")
        .iter()
        .filter_map(|row| row.try_get_by_index::<String>(0).ok())
        .collect::<Vec<_>>()
        .join("\n");
    txn.rollback().await.expect("rollback");
    plan
}

/// Partitions a plan reads: the `webhook_events_p…` scans that were not pruned.
fn days_read(plan: &str) -> usize {
    plan.lines()
        .filter(|l| l.contains(" on webhook_events_p"))
        .count()
}

fn provider_event(key: &str) -> Received {
    Received {
        source: Source::SignalWire,
        disposition: Disposition::Deliver(EventType::CallCompleted),
        payload: json!({}),
        provider_payload: None,
        dedupe_key: Some(key.to_owned()),
        client_ip: None,
        ordering_key: None,
    }
}

/// An inbound event with `key`, created `days_ago` days ago in that day's partition.
async fn keyed_event_days_ago(db: &DatabaseConnection, key: &str, days_ago: u32) {
    db.execute_unprepared(&format!(
        "SELECT webhook_history_ensure_days(d, d) \
           FROM (SELECT ((now() - interval '{days_ago} days') AT TIME ZONE 'UTC')::date AS d) x; \
         INSERT INTO webhook_events (id, message_id, direction, source, event_type, payload, \
           status, dedupe_key, created_at, updated_at) \
         VALUES (webhook_event_id(now() - interval '{days_ago} days'), 'msg_' || md5('{key}'), \
           'inbound', 'signalwire', 'call.completed', '{{}}', 'processed', '{key}', \
           now() - interval '{days_ago} days', now())"
    ))
    .await
    .expect("keyed event");
}

#[tokio::test]
async fn a_migrated_database_has_today_and_the_week_ahead_and_no_default_partition() {
    let app = TestApp::spawn().await;
    let (days, legacy) = partitions::days(&app.db).await.expect("days");
    let today = Utc::now().date_naive();
    let expected: Vec<_> = (0..=u64::from(partitions::DAYS_AHEAD.unsigned_abs()))
        .filter_map(|n| today.checked_add_days(Days::new(n)))
        .collect();
    assert_eq!(days, expected);
    assert!(!legacy, "a fresh database has no legacy partition");
    let defaults: i64 = scalar(
        &app.db,
        "SELECT count(*) FROM pg_partitioned_table WHERE partdefid <> 0",
    )
    .await;
    assert_eq!(defaults, 0);
}

#[tokio::test]
async fn an_event_id_starts_with_its_creation_day_and_is_safe_in_javascript() {
    let app = TestApp::spawn().await;
    let recorded = record_batch(&app.db, vec![provider_event("k")])
        .await
        .expect("batch")
        .pop()
        .expect("one")
        .expect("recorded");
    let id = recorded.event.id;
    assert_eq!(
        partitions::day_of(id),
        Some(recorded.event.created_at.date_naive())
    );
    assert!(id < 1 << 53, "{id}");
}

#[tokio::test]
async fn an_event_for_a_day_without_a_partition_is_refused() {
    let app = TestApp::spawn().await;
    let refused = app
        .db
        .execute_unprepared(
            "INSERT INTO webhook_events (id, message_id, direction, source, event_type, \
               payload, status, created_at) \
             VALUES (webhook_event_id(now() - interval '400 days'), 'msg_x', 'inbound', \
               'signalwire', 'call.completed', '{}', 'processed', now() - interval '400 days')",
        )
        .await;
    assert!(refused.is_err(), "no DEFAULT partition takes it");
}

#[tokio::test]
async fn loading_events_by_id_reads_only_the_partitions_of_those_ids() {
    let app = TestApp::spawn().await;
    let recorded = record_batch(&app.db, vec![provider_event("k")])
        .await
        .expect("batch")
        .pop()
        .expect("one")
        .expect("recorded");
    // The delivery path's load (`store::load_batch`, `id = ANY($1)`).
    let plan = custom_plan(
        &app.db,
        "SELECT * FROM webhook_events WHERE id = ANY($1)",
        "bigint[]",
        &format!("ARRAY[{}]::bigint[]", recorded.event.id),
    )
    .await;
    assert_eq!(days_read(&plan), 1, "{plan}");
}

#[tokio::test]
async fn a_date_filtered_history_query_reads_only_the_days_in_its_range() {
    let app = TestApp::spawn().await;
    let today = Utc::now().date_naive();
    let from = today.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let filter = wirehook_api::history::Filter {
        from: Some(from),
        to: Some(from + chrono::Duration::hours(12)),
        ..Default::default()
    };
    let stmt = filter
        .apply(entity::webhook_events::Entity::find())
        .order_by_desc(entity::webhook_events::Column::CreatedAt)
        .order_by_desc(entity::webhook_events::Column::Id)
        .build(DbBackend::Postgres);
    // Bind the statement's values as literals of a custom plan, as the api's first runs are.
    let explained = app
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (COSTS OFF) {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        ))
        .await
        .expect("explain")
        .iter()
        .filter_map(|row| row.try_get_by_index::<String>(0).ok())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(days_read(&explained), 1, "{explained}");
    assert!(
        explained.contains(&format!("webhook_events_p{}", today.format("%Y%m%d"))),
        "{explained}"
    );
}

#[tokio::test]
async fn a_provider_retry_on_the_next_day_is_still_a_duplicate() {
    let app = TestApp::spawn().await;
    keyed_event_days_ago(&app.db, "retried", 1).await;
    let outcome = record_batch(&app.db, vec![provider_event("retried")])
        .await
        .expect("batch")
        .pop()
        .expect("one")
        .expect("recorded");
    assert!(outcome.duplicate, "the first event is yesterday's");
    assert_eq!(outcome.deliveries, 0);
}

#[tokio::test]
async fn a_key_older_than_the_previous_day_is_accepted_again() {
    let app = TestApp::spawn().await;
    keyed_event_days_ago(&app.db, "old", 2).await;
    let outcome = record_batch(&app.db, vec![provider_event("old")])
        .await
        .expect("batch")
        .pop()
        .expect("one")
        .expect("recorded");
    assert!(!outcome.duplicate, "the window is today and yesterday");
}

/// A database filled by the schema before partitioning (`events` events over 40 days), then
/// migrated in place; returns its fingerprints before and after, and the app on it.
async fn migrated_legacy(events: i64) -> (legacy::Fingerprint, legacy::Fingerprint, TestApp) {
    let database = fresh_database().await;
    let db = database.connect(POOL).await.expect("connect");
    legacy::migrate_before_partitioning(&db)
        .await
        .expect("old schema");
    legacy::fill(&db, events).await.expect("fill");
    let before = legacy::fingerprint(&db).await.expect("fingerprint");
    let started = Instant::now();
    migration::migrate(&db).await.expect("migrate in place");
    eprintln!(
        "partitioned {events} events in place in {:?} (the exclusive part is logged)",
        started.elapsed()
    );
    let after = legacy::fingerprint(&db).await.expect("fingerprint");
    (
        before,
        after,
        TestApp::spawn_on_database(database, db).await,
    )
}

#[tokio::test]
async fn an_existing_history_is_partitioned_in_place_with_every_row_id_and_message_id_kept() {
    let (before, after, app) = migrated_legacy(50_000).await;
    assert_eq!(before.events, 50_000);
    assert_eq!(after, before);
    let (days, legacy) = partitions::days(&app.db).await.expect("days");
    assert!(legacy, "the old table is the legacy partition");
    assert_eq!(days.len(), 8);

    // The old rows answer as before, by id (with their attempts) and in the history.
    let (status, body) = app.get("/api/webhooks/events/1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["messageId"], "msg_legacy00000000000000000001");
    assert_eq!(body["deliveryAttempts"].as_array().map(Vec::len), Some(1));
    let (_, page) = app.get("/api/webhooks/events?limit=1").await;
    assert_eq!(page["total"], 50_000, "{page}");

    // A new event goes to today's partition; the old de-duplication keys still hold.
    let outcomes = record_batch(
        &app.db,
        vec![provider_event("fresh"), provider_event("key-50000")],
    )
    .await
    .expect("batch");
    let fresh = outcomes[0].as_ref().expect("fresh");
    assert_eq!(
        partitions::day_of(fresh.event.id),
        Some(Utc::now().date_naive())
    );
    assert!(outcomes[1].as_ref().expect("old key").duplicate);
}

#[tokio::test]
async fn retention_empties_the_legacy_partition_row_by_row_then_drops_it() {
    let (_, _, app) = migrated_legacy(2_000).await;
    let purged = wirehook_core::retention::purge(&app.db, Duration::from_secs(20 * 86_400))
        .await
        .expect("purge");
    // Half the fill is older than 20 days; of those, one event in ten (pending) stays.
    let left: i64 = scalar(&app.db, "SELECT count(*) FROM webhook_events").await;
    assert_eq!(i64::try_from(purged.events).expect("events") + left, 2_000);
    let old_final: i64 = scalar(
        &app.db,
        "SELECT count(*) FROM webhook_events \
         WHERE created_at < now() - interval '20 days' AND status <> 'pending'",
    )
    .await;
    assert_eq!(old_final, 0);
    let orphans: i64 = scalar(
        &app.db,
        "SELECT count(*) FROM webhook_attempts a \
         WHERE NOT EXISTS (SELECT FROM webhook_events e WHERE e.id = a.event_id)",
    )
    .await;
    assert_eq!(orphans, 0);
    let (_, page) = app.get("/api/webhooks/events?limit=1").await;
    assert_eq!(page["total"], left, "{page}");

    app.db
        .execute_unprepared(
            "UPDATE webhook_events SET status = 'cancelled' WHERE status = 'pending'",
        )
        .await
        .expect("settle");
    wirehook_core::retention::purge(&app.db, Duration::ZERO)
        .await
        .expect("purge");
    let (_, legacy) = partitions::days(&app.db).await.expect("days");
    assert!(!legacy, "the emptied legacy partition is dropped");
    let (_, page) = app.get("/api/webhooks/events?limit=1").await;
    assert_eq!(page["total"], 0, "{page}");
}
