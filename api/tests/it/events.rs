//! `/api/webhooks/events`: history paging, each filter, details with attempts.

use chrono::{Duration, TimeZone, Utc};
use entity::{Direction, EventStatus, Source, webhook_attempts};
use sea_orm::{ActiveModelTrait, Set};
use serde_json::json;

use crate::common::{NewEvent, TestApp, error_code, is_iso8601};

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
