//! `/api/webhooks/events`: history paging, each filter, details with attempts.

use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::{Direction, EventStatus, Source, webhook_attempts};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use serde_json::json;

use crate::common::{NewEvent, TestApp, error_code, is_iso8601};
use crate::inbound::{post_signalwire, signalwire_call};

async fn seed_inbound(app: &TestApp, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(app.insert_event(NewEvent::inbound("call.completed")).await);
    }
    ids
}

#[tokio::test]
async fn pages_split_the_history_newest_first() {
    let app = TestApp::spawn().await;
    let ids = seed_inbound(&app, 45).await;
    let (status, body) = app.get("/api/webhooks/events?page=3&limit=20").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["total"], 45);
    assert_eq!(body["page"], 3);
    assert_eq!(body["pages"], 3);
    assert_eq!(body["count"], 5);
    let got: Vec<i64> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    let mut expected: Vec<i64> = ids.iter().rev().skip(40).copied().collect();
    expected.truncate(5);
    assert_eq!(got, expected);
}

#[tokio::test]
async fn defaults_are_page_1_and_limit_20() {
    let app = TestApp::spawn().await;
    seed_inbound(&app, 21).await;
    let (_, body) = app.get("/api/webhooks/events").await;
    assert_eq!(body["page"], 1);
    assert_eq!(body["count"], 20);
    assert_eq!(body["pages"], 2);
}

#[tokio::test]
async fn a_page_past_the_end_is_empty() {
    let app = TestApp::spawn().await;
    seed_inbound(&app, 3).await;
    let (status, body) = app.get("/api/webhooks/events?page=9").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 0);
    assert_eq!(body["total"], 3);
    assert_eq!(body["events"], json!([]));
}

#[tokio::test]
async fn empty_history_has_zero_pages() {
    let app = TestApp::spawn().await;
    let (_, body) = app.get("/api/webhooks/events").await;
    assert_eq!(
        (body["total"].clone(), body["pages"].clone()),
        (json!(0), json!(0))
    );
}

#[tokio::test]
async fn events_carry_the_contract_fields() {
    let app = TestApp::spawn().await;
    let cfg = app.create_config(json!({})).await;
    let cfg_id = cfg["id"].as_i64().expect("id");
    app.insert_event(NewEvent::outbound(
        "call.completed",
        cfg_id,
        EventStatus::Delivered,
    ))
    .await;
    let (_, body) = app.get("/api/webhooks/events").await;
    let e = &body["events"][0];
    assert_eq!(e["direction"], "outbound");
    assert_eq!(e["source"], "11wire");
    assert_eq!(e["eventType"], "call.completed");
    assert_eq!(e["status"], "delivered");
    assert_eq!(e["webhookConfigId"], cfg_id);
    assert_eq!(e["attempts"], 1);
    assert_eq!(e["payload"]["callId"], "CA123");
    assert!(
        e["messageId"]
            .as_str()
            .is_some_and(|m| m.starts_with("msg_"))
    );
    assert!(is_iso8601(&e["createdAt"]) && is_iso8601(&e["updatedAt"]));
}

#[tokio::test]
async fn each_filter_narrows_the_history() {
    let app = TestApp::spawn().await;
    let cfg = app.create_config(json!({})).await["id"]
        .as_i64()
        .expect("id");
    let other = app.create_config(json!({"name": "Other"})).await["id"]
        .as_i64()
        .expect("id");
    let inbound = app.insert_event(NewEvent::inbound("call.completed")).await;
    let eleven = app
        .insert_event(NewEvent {
            source: Source::ElevenLabs,
            ..NewEvent::inbound("voice.completed")
        })
        .await;
    let failed = app
        .insert_event(NewEvent::outbound(
            "call.completed",
            cfg,
            EventStatus::Failed,
        ))
        .await;
    let of_other = app
        .insert_event(NewEvent::outbound(
            "conversation.completed",
            other,
            EventStatus::Delivered,
        ))
        .await;
    let cases = [
        ("direction=inbound", vec![eleven, inbound]),
        ("direction=outbound", vec![of_other, failed]),
        ("source=elevenlabs", vec![eleven]),
        ("source=11wire", vec![of_other, failed]),
        ("eventType=call.completed", vec![failed, inbound]),
        ("status=failed", vec![failed]),
        ("status=processed", vec![eleven, inbound]),
        (&*format!("webhookConfigId={other}"), vec![of_other]),
        (
            "direction=outbound&status=failed&eventType=call.completed",
            vec![failed],
        ),
    ];
    for (query, expected) in cases {
        let (status, body) = app.get(&format!("/api/webhooks/events?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        let got: Vec<i64> = body["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect();
        assert_eq!(got, expected, "{query}");
        assert_eq!(body["total"], expected.len(), "{query}");
    }
}

/// Ids of the events in a history answer, in order.
fn ids_of(body: &serde_json::Value) -> Vec<i64> {
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect()
}

#[tokio::test]
async fn call_id_finds_every_event_of_one_call_in_both_directions() {
    let app = TestApp::spawn().await;
    let cfg = app
        .create_config(json!({"filters": null, "url": "http://127.0.0.1:9/hooks"}))
        .await["id"]
        .as_i64()
        .expect("id");
    // A provider webhook for the call (inbound, fanned out to the configuration), one for
    // another call, and a platform event published with the call's id.
    let (status, body) = post_signalwire(
        &app,
        &signalwire_call("call.completed", "CA-console-1", "campaign-123"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_signalwire(
        &app,
        &signalwire_call("call.completed", "CA-other", "campaign-123"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, published) = app
        .post(
            "/api/webhooks/events",
            json!({"eventType": "conversation.completed",
                   "payload": {"callId": "CA-console-1", "conversationId": "conv-1"}}),
        )
        .await;
    assert_eq!(status, 201, "{published}");

    let (status, body) = app.get("/api/webhooks/events?callId=CA-console-1").await;
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().expect("events");
    // The provider's webhook + its delivery, the published event + its delivery.
    assert_eq!(body["total"], 4, "{body}");
    assert_eq!(events.len(), 4, "{body}");
    for e in events {
        let normalized = e.get("normalizedPayload").unwrap_or(&e["payload"]);
        assert_eq!(normalized["callId"], "CA-console-1", "{e}");
    }
    let provider: Vec<_> = events
        .iter()
        .filter(|e| e["source"] == "signalwire" && e["direction"] == "inbound")
        .collect();
    assert_eq!(provider.len(), 1, "{body}");
    // The provider's own body is what `payload` shows for the webhook it sent.
    assert_eq!(provider[0]["payload"]["call_id"], "CA-console-1");

    // With other filters, and exact: a prefix or another case finds nothing.
    let (_, body) = app
        .get(&format!(
            "/api/webhooks/events?callId=CA-console-1&direction=outbound&webhookConfigId={cfg}"
        ))
        .await;
    assert_eq!(body["total"], 2, "{body}");
    assert_eq!(ids_of(&body).len(), 2);
    let (_, body) = app
        .get("/api/webhooks/events?callId=CA-console-1&source=signalwire&direction=inbound")
        .await;
    assert_eq!(body["total"], 1, "{body}");
    let (_, body) = app
        .get("/api/webhooks/events?callId=CA-console-1&eventType=call.created")
        .await;
    assert_eq!(body["total"], 0, "{body}");
    for other in ["CA-console", "ca-console-1", "CA-console-1%20"] {
        let (_, body) = app
            .get(&format!("/api/webhooks/events?callId={other}"))
            .await;
        assert_eq!(body["total"], 0, "{other}: {body}");
    }
    let (status, body) = app.get("/api/webhooks/events?callId=").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_parameter");
}

#[tokio::test]
async fn the_call_id_search_is_answered_from_its_index_even_with_a_generic_plan() {
    use sea_orm::{DbBackend, EntityTrait, QueryOrder, QueryTrait, TransactionTrait};

    let app = TestApp::spawn().await;
    let filter = wirehook_api::history::Filter {
        call_id: Some("CA123".into()),
        ..Default::default()
    };
    let stmt = filter
        .apply(entity::webhook_events::Entity::find())
        .order_by_desc(entity::webhook_events::Column::CreatedAt)
        .order_by_desc(entity::webhook_events::Column::Id)
        .build(DbBackend::Postgres);
    // A prepared statement's generic plan cannot see the parameter's value; the index must
    // still match, which it does only because the JSON key is a literal in the query.
    let txn = app.db.begin().await.expect("begin");
    txn.execute_unprepared(
        "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan",
    )
    .await
    .expect("settings");
    txn.execute_unprepared(&format!("PREPARE by_call(text) AS {}", stmt.sql))
        .await
        .expect("prepare");
    let plan = txn
        .query_all_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            "EXPLAIN EXECUTE by_call('CA123')",
        ))
        .await
        .expect("explain")
        .iter()
        .filter_map(|row| row.try_get_by_index::<String>(0).ok())
        .collect::<Vec<_>>()
        .join("\n");
    txn.rollback().await.expect("rollback");
    assert!(plan.contains("webhook_events_call_id"), "{plan}");
}

#[tokio::test]
async fn date_filters_bound_creation_time() {
    let app = TestApp::spawn().await;
    let day = |d: u32| {
        Utc.with_ymd_and_hms(2023, 7, d, 10, 0, 0)
            .single()
            .expect("date")
    };
    let mut ids = Vec::new();
    for d in [27, 28, 29] {
        ids.push(
            app.insert_event(NewEvent {
                created_at: Some(day(d)),
                ..NewEvent::inbound("call.created")
            })
            .await,
        );
    }
    let cases = [
        ("fromDate=2023-07-28", vec![ids[2], ids[1]]),
        ("toDate=2023-07-28", vec![ids[1], ids[0]]),
        (
            "fromDate=2023-07-28T00:00:00Z&toDate=2023-07-28T23:59:59Z",
            vec![ids[1]],
        ),
        ("fromDate=2023-07-29T10:00:00%2B00:00", vec![ids[2]]),
        ("fromDate=2023-07-29T10:00:01Z", vec![]),
    ];
    for (query, expected) in cases {
        let (status, body) = app.get(&format!("/api/webhooks/events?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        let got: Vec<i64> = body["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect();
        assert_eq!(got, expected, "{query}");
    }
}

#[tokio::test]
async fn invalid_query_values_are_400() {
    let app = TestApp::spawn().await;
    for query in [
        "page=0",
        "page=-1",
        "page=abc",
        "limit=0",
        "limit=101",
        "limit=1000000",
        "direction=sideways",
        "status=lost",
        "source=twilio",
        "fromDate=yesterday",
        "toDate=2023-13-01",
        "fromDate=2023-07-29&toDate=2023-07-28",
        "webhookConfigId=one",
        "eventType=",
    ] {
        let (status, body) = app.get(&format!("/api/webhooks/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        error_code(&body);
    }
}

#[tokio::test]
async fn sql_in_a_filter_is_just_a_value() {
    let app = TestApp::spawn().await;
    seed_inbound(&app, 2).await;
    let (status, body) = app
        .get("/api/webhooks/events?eventType=call.completed%27%20OR%20%271%27%3D%271")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 0);
}

#[tokio::test]
async fn details_include_the_configuration_and_attempts() {
    let app = TestApp::spawn().await;
    let cfg = app.create_config(json!({"name": "CRM Integration"})).await;
    let cfg_id = cfg["id"].as_i64().expect("id");
    let id = app
        .insert_event(NewEvent::outbound(
            "call.completed",
            cfg_id,
            EventStatus::Delivered,
        ))
        .await;
    for (n, code) in [(1, 500), (2, 200)] {
        webhook_attempts::ActiveModel {
            event_id: Set(id),
            attempt: Set(n),
            request_headers: Set(json!({"webhook-id": "msg_x"})),
            status_code: Set(Some(code)),
            response_headers: Set(Some(json!({"content-type": "text/plain"}))),
            response_body: Set(Some(if code == 200 {
                "Received".into()
            } else {
                "oops".into()
            })),
            truncated: Set(false),
            duration_ms: Set(245),
            error_kind: Set((code != 200).then(|| "http_status".to_owned())),
            error_message: Set((code != 200).then(|| "receiver answered 500".to_owned())),
            created_at: Set(Utc::now() + Duration::milliseconds(i64::from(n))),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .expect("attempt");
    }
    let (status, body) = app.get(&format!("/api/webhooks/events/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["event"]["id"], id);
    assert_eq!(
        body["webhookConfig"],
        json!({"id": cfg_id, "name": "CRM Integration", "url": "https://marketing.example.com/webhooks/11wire"})
    );
    let attempts = body["deliveryAttempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["statusCode"], 500);
    assert_eq!(attempts[0]["errorKind"], "http_status");
    assert_eq!(attempts[1]["responseBody"], "Received");
    assert_eq!(attempts[1]["durationMs"], 245);
    assert_eq!(attempts[1]["truncated"], false);
    assert!(is_iso8601(&attempts[1]["createdAt"]));
}

#[tokio::test]
async fn details_of_an_inbound_event_have_no_configuration() {
    let app = TestApp::spawn().await;
    let id = app
        .insert_event(NewEvent {
            direction: Direction::Inbound,
            ..NewEvent::inbound("call.created")
        })
        .await;
    let (status, body) = app.get(&format!("/api/webhooks/events/{id}")).await;
    assert_eq!(status, 200);
    assert!(body.get("webhookConfig").is_none(), "{body}");
    assert_eq!(body["deliveryAttempts"], json!([]));
}

#[tokio::test]
async fn details_of_an_unknown_event_is_404() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/webhooks/events/987654").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

/// Seeds events spread over five days, with mixed directions, statuses, types and configs.
async fn seed_days(app: &TestApp) -> i64 {
    let config = app.create_config(json!({})).await["id"]
        .as_i64()
        .expect("id");
    let start = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .expect("date")
        .with_timezone(&Utc);
    for i in 0..120i64 {
        let mut e = match i % 4 {
            0 => NewEvent::inbound("call.completed"),
            1 => NewEvent::outbound("call.completed", config, EventStatus::Delivered),
            2 => NewEvent::outbound("call.started", config, EventStatus::Failed),
            _ => NewEvent::outbound("call.completed", config, EventStatus::Pending),
        };
        // Every hour for five days, so ranges can cut days anywhere.
        e.created_at = Some(start + chrono::Duration::minutes(i * 60));
        app.insert_event(e).await;
    }
    config
}

/// The query strings whose `total` is checked, with the SQL condition each one means.
fn total_cases(config: i64) -> Vec<(String, String)> {
    let mut cases = vec![
        (String::new(), "true".to_owned()),
        (
            "direction=outbound&status=delivered&eventType=call.completed".into(),
            "direction = 'outbound' AND status = 'delivered' AND event_type = 'call.completed'"
                .into(),
        ),
        (
            format!("webhookConfigId={config}&status=failed"),
            format!("webhook_config_id = {config} AND status = 'failed'"),
        ),
        ("source=signalwire".into(), "source = 'signalwire'".into()),
    ];
    let ranges = [
        ("2026-03-02", None, "created_at >= '2026-03-02T00:00:00Z'"),
        (
            "2026-03-02T05:30:00Z",
            Some("2026-03-04T10:00:00Z"),
            "created_at BETWEEN '2026-03-02T05:30:00Z' AND '2026-03-04T10:00:00Z'",
        ),
        (
            "2026-03-02T05:00:00Z",
            Some("2026-03-02T09:00:00Z"),
            "created_at BETWEEN '2026-03-02T05:00:00Z' AND '2026-03-02T09:00:00Z'",
        ),
        (
            "2026-03-01",
            Some("2026-03-03"),
            "created_at BETWEEN '2026-03-01T00:00:00Z' AND '2026-03-03T23:59:59.999Z'",
        ),
    ];
    for (from, to, sql) in ranges {
        let mut q = format!("fromDate={from}");
        if let Some(to) = to {
            q.push_str(&format!("&toDate={to}"));
        }
        cases.push((q.clone(), sql.to_owned()));
        cases.push((
            format!("{q}&direction=outbound&status=pending"),
            format!("{sql} AND direction = 'outbound' AND status = 'pending'"),
        ));
    }
    cases.push((
        "toDate=2026-03-03T00:00:00Z".into(),
        "created_at <= '2026-03-03T00:00:00Z'".into(),
    ));
    cases
}

async fn assert_totals_exact(app: &TestApp, config: i64, when: &str) {
    for (query, condition) in total_cases(config) {
        let (status, page) = app
            .get(&format!("/api/webhooks/events?limit=1&{query}"))
            .await;
        assert_eq!(status, 200, "{query}: {page}");
        let row = app
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT count(*) AS n FROM webhook_events WHERE {condition}"),
            ))
            .await
            .expect("count")
            .expect("row");
        let expected: i64 = row.try_get("", "n").expect("n");
        assert_eq!(page["total"], expected, "{when}: total of `{query}`");
    }
}

async fn fold(app: &TestApp) {
    app.db
        .execute_unprepared("SELECT webhook_event_counts_fold()")
        .await
        .expect("fold");
}

#[tokio::test]
async fn totals_equal_a_direct_count_for_every_filter_and_range() {
    let app = TestApp::spawn().await;
    let config = seed_days(&app).await;
    assert_totals_exact(&app, config, "before folding").await;
    fold(&app).await;
    assert_totals_exact(&app, config, "after folding").await;
}

#[tokio::test]
async fn totals_follow_status_changes_deletions_and_a_deleted_configuration_keeps_its_events() {
    let app = TestApp::spawn().await;
    let config = seed_days(&app).await;
    fold(&app).await;
    app.db
        .execute_unprepared(
            "UPDATE webhook_events SET status = 'delivered', attempts = attempts + 1 \
             WHERE status = 'pending' AND created_at < '2026-03-03T12:00:00Z'",
        )
        .await
        .expect("update");
    app.db
        .execute_unprepared("DELETE FROM webhook_events WHERE id % 7 = 0")
        .await
        .expect("delete");
    assert_totals_exact(&app, config, "after changes, unfolded").await;
    fold(&app).await;
    let (status, _) = app.delete(&format!("/api/webhooks/config/{config}")).await;
    assert_eq!(status, 200);
    assert_totals_exact(&app, config, "after the config was deleted").await;
    let (_, page) = app
        .get(&format!("/api/webhooks/events?webhookConfigId={config}"))
        .await;
    // A deleted configuration keeps its events: the history by configuration still finds them.
    let kept = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM webhook_events WHERE webhook_config_id = {config}"),
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert!(kept > 0);
    assert_eq!(page["total"], kept);
}
