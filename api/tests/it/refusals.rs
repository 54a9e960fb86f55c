//! A flood of refused provider requests from one address writes a bounded number of audit rows;
//! every request still gets its refusal.

use std::time::Duration;

use futures::StreamExt as _;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use wirehook_api::refusals::RefusalLimit;

use crate::common::TestApp;

const ELEVENLABS_PATH: &str = "/api/webhooks/elevenlabs";

/// Posts `n` badly signed ElevenLabs requests as `client` (through the trusted proxy header),
/// 16 at a time; returns their statuses.
async fn flood(app: &TestApp, client: &str, n: usize) -> Vec<u16> {
    let body = vec![b'{'; 8 * 1024];
    futures::stream::iter(0..n)
        .map(|_| {
            app.client
                .post(app.url(ELEVENLABS_PATH))
                .header("content-type", "application/json")
                .header("x-forwarded-for", client)
                .header("ElevenLabs-Signature", format!("t=1,v0={}", "0".repeat(64)))
                .body(body.clone())
                .send()
        })
        .buffer_unordered(16)
        .map(|response| response.expect("request").status().as_u16())
        .collect()
        .await
}

async fn rejected_rows(app: &TestApp, client: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) FROM webhook_events WHERE status = 'rejected' AND client_ip = $1",
            [client.into()],
        ))
        .await
        .expect("count")
        .expect("row");
    row.try_get_by_index(0).expect("count")
}

#[tokio::test]
async fn a_flood_of_refusals_from_one_address_records_only_its_limit() {
    let app = TestApp::spawn_inbound(|c| {
        c.trusted_proxies = "127.0.0.1/32".parse().expect("CIDR");
        // The limit as in production; a window longer than any test run, so that the count
        // cannot depend on how fast the flood goes.
        c.refusal_limit = RefusalLimit {
            window: Duration::from_secs(3600),
            ..RefusalLimit::per_minute(100)
        };
    })
    .await;

    let statuses = flood(&app, "198.51.100.7", 300).await;
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    assert_eq!(rejected_rows(&app, "198.51.100.7").await, 100);

    // Another address has a limit of its own.
    let statuses = flood(&app, "198.51.100.8", 3).await;
    assert_eq!(statuses, [401, 401, 401]);
    assert_eq!(rejected_rows(&app, "198.51.100.8").await, 3);
}
