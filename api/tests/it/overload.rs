//! Backpressure: past its bounds the api answers `503 overloaded` with `Retry-After` at once
//! (counted), instead of queueing work without limit; what it answered 2xx is durable.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wirehook_api::config::Limits;
use wirehook_api::inbound::{elevenlabs, signalwire};

use crate::common::{ELEVENLABS_SECRET, SIGNALWIRE_KEY, TestApp, error_code};
use crate::inbound::signalwire_call;

const SIGNALWIRE_PATH: &str = "/api/webhooks/signalwire";

/// Status, `Retry-After` and JSON body of an answer.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

/// Posts a signed SignalWire `call.completed` for `call_id`; the client gives up after 10 s,
/// so a request that would wait for the held commit fails the test instead of hanging it.
async fn post_call(app: &TestApp, call_id: &str) -> Answer {
    let body = signalwire_call("call.completed", call_id, "campaign-1");
    let url = format!("{}{SIGNALWIRE_PATH}", app.public_base_url);
    let signature = signalwire::sign_json(SIGNALWIRE_KEY.as_bytes(), &url, &body);
    let response = app
        .client
        .post(app.url(SIGNALWIRE_PATH))
        .header("content-type", "application/json")
        .header("X-SignalWire-Signature", signature)
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await
        .expect("an answer within 10 s");
    answer(response).await
}

fn assert_overloaded(answer: &Answer) {
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(error_code(&answer.body), "overloaded");
    assert_eq!(answer.body["success"], false);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
}

/// The value of the counter `name` with `labels` on `/metrics` (0 when not yet counted).
async fn counter(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> u64 {
    counter_via(&app.client, app, name, labels).await
}

/// [`counter`] read through `client`'s connections.
async fn counter_via(
    client: &reqwest::Client,
    app: &TestApp,
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    let text = client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .next()
        .unwrap_or(0)
}

/// Waits until a session of the test database waits for a lock.
async fn a_lock_waiter(app: &TestApp) {
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
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no session waits for the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ingest_past_its_bound_is_refused_503_with_retry_after_while_the_accepted_is_durable() {
    let app = TestApp::spawn_limited(Limits {
        ingest_in_flight: 1,
        ..Limits::default()
    })
    .await;
    let inbound = [("source", "signalwire"), ("result", "overloaded")];
    let rest = [("result", "overloaded")];
    let inbound_before = counter(&app, "wirehook_inbound_requests_total", &inbound).await;
    let rest_before = counter(&app, "wirehook_api_requests_total", &rest).await;

    // Hold the group commit: its insert into webhook_events waits for this lock.
    let holder = app.db.begin().await.expect("begin");
    holder
        .execute_unprepared("LOCK TABLE webhook_events IN SHARE MODE")
        .await
        .expect("lock");
    let held = post_call(&app, "held");
    tokio::pin!(held);
    tokio::select! {
        answer = &mut held => panic!("answered {} while the commit was held", answer.status),
        () = a_lock_waiter(&app) => {}
    }

    // The one slot is taken: concurrent requests past it are refused at once.
    let refused = futures::future::join_all((0..8).map(|i| {
        let app = &app;
        async move { post_call(app, &format!("refused-{i}")).await }
    }))
    .await;
    for answer in &refused {
        assert_overloaded(answer);
    }
    let publish = app
        .client
        .post(app.url("/api/webhooks/events"))
        .bearer_auth(&app.token)
        .json(&json!({"eventType": "call.completed", "payload": {"callId": "p"}}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer within 10 s");
    assert_overloaded(&answer(publish).await);
    assert_eq!(
        counter(&app, "wirehook_inbound_requests_total", &inbound).await - inbound_before,
        8
    );
    assert_eq!(
        counter(&app, "wirehook_api_requests_total", &rest).await - rest_before,
        1
    );

    holder.rollback().await.expect("release");
    let accepted = held.await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let id = accepted.body["eventId"].as_i64().expect("eventId");
    let recorded = app
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n, count(*) FILTER (WHERE id = $1) AS held \
             FROM webhook_events WHERE direction = 'inbound'"
                .replace("$1", &id.to_string()),
        ))
        .await
        .expect("count")
        .expect("a row");
    let (n, held): (i64, i64) = (
        recorded.try_get("", "n").expect("n"),
        recorded.try_get("", "held").expect("held"),
    );
    assert_eq!((n, held), (1, 1), "only the accepted event is recorded");
    assert_eq!(post_call(&app, "after").await.status, 200);
}

/// Holds the group commit: its insert into webhook_events waits for this lock.
async fn hold_commit(app: &TestApp) -> sea_orm::DatabaseTransaction {
    let holder = app.db.begin().await.expect("begin");
    holder
        .execute_unprepared("LOCK TABLE webhook_events IN SHARE MODE")
        .await
        .expect("lock");
    holder
}

/// Posts `n` webhooks at once and answers them all (200) a second after the first reached the
/// held commit: every request sent with it is admitted long before, so with `n` at the bound the
/// in-flight count reaches it and even the fastest answer takes a second, far past the target.
async fn slow_window(app: &TestApp, n: usize) {
    let holder = hold_commit(app).await;
    let ids: Vec<String> = (0..n).map(|i| format!("slow-{i}")).collect();
    let slow = futures::future::join_all(ids.iter().map(|id| post_call(app, id)));
    tokio::pin!(slow);
    tokio::select! {
        answers = &mut slow => panic!("answered {} while the commit was held", answers.len()),
        () = a_lock_waiter(app) => {}
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    holder.rollback().await.expect("release");
    for answer in slow.await {
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

/// Sends `bound + 1` webhooks at once while the commit is held: the bound's worth are taken and
/// exactly one is refused at once (while the commit is held, only a refusal can be answered);
/// the taken ones are accepted when it is released.
async fn one_past_the_bound_is_refused(app: &TestApp, bound: usize) {
    let holder = hold_commit(app).await;
    let ids: Vec<String> = (0..=bound).map(|i| format!("after-{i}")).collect();
    let mut posts: futures::stream::FuturesUnordered<_> =
        ids.iter().map(|id| post_call(app, id)).collect();
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut posts),
    )
    .await
    .expect("one request past the bound refused while the bound is in flight")
    .expect("an answer");
    assert_overloaded(&first);
    holder.rollback().await.expect("release");
    let rest: Vec<Answer> = futures::StreamExt::collect(posts).await;
    assert_eq!(rest.len(), bound);
    for answer in &rest {
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

#[tokio::test]
async fn a_standing_queue_at_the_ingest_bound_lowers_it_and_the_excess_is_refused() {
    let app = TestApp::spawn_limited(Limits {
        ingest_in_flight: 10,
        ingest_latency_target: Some(Duration::from_millis(50)),
        ..Limits::default()
    })
    .await;
    // Twice in a row the bound is full and no answer is fast: a queue stands.
    slow_window(&app, 10).await;
    slow_window(&app, 10).await;
    // The bound fell from 10 to the floor, 8: eight answers in over a second, none faster than a
    // second, fit fewer than eight.
    one_past_the_bound_is_refused(&app, 8).await;
}

#[tokio::test]
async fn with_no_latency_target_the_ingest_bound_stays_at_its_maximum() {
    let app = TestApp::spawn_limited(Limits {
        ingest_in_flight: 10,
        ingest_latency_target: None,
        ..Limits::default()
    })
    .await;
    slow_window(&app, 10).await;
    slow_window(&app, 10).await;
    one_past_the_bound_is_refused(&app, 10).await;
}

#[tokio::test]
async fn a_connection_past_the_cap_is_answered_503_and_closed_until_one_ends() {
    let app = TestApp::spawn_limited(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let labels = [("source", "elevenlabs"), ("result", "overloaded")];
    // Two clients, each keeping its one connection open after its answer.
    let mut open = Vec::new();
    for _ in 0..2 {
        let client = reqwest::Client::new();
        let response = client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("body");
        open.push(client);
    }
    let before = counter_via(&open[1], &app, "wirehook_inbound_requests_total", &labels).await;

    let body = br#"{"type":"post_call_transcription","data":{}}"#.to_vec();
    let signature = elevenlabs::sign(
        ELEVENLABS_SECRET.as_bytes(),
        chrono::Utc::now().timestamp(),
        &body,
    );
    let third = reqwest::Client::new()
        .post(app.url("/api/webhooks/elevenlabs"))
        .header("content-type", "application/json")
        .header("ElevenLabs-Signature", signature)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer within 10 s");
    assert_eq!(
        third
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert_overloaded(&answer(third).await);
    assert_eq!(
        counter_via(&open[1], &app, "wirehook_inbound_requests_total", &labels).await,
        before + 1
    );

    // One client goes away: its place is free again once the api has seen the close.
    drop(open.remove(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::Client::new()
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(
            Instant::now() < deadline,
            "the closed connection's place stays taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connection_past_the_cap_and_its_refusals_waits_to_be_answered_503_not_dropped() {
    let app = TestApp::spawn_limited(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n";
    // The one served connection, kept open after its answer.
    let mut served = TcpStream::connect(app.addr).await.expect("connect");
    served.write_all(healthz).await.expect("send");
    assert!(read_answer(&mut served).await.starts_with("http/1.1 200"));
    // The one refusal under way: connected, its request not sent yet.
    let refused = TcpStream::connect(app.addr).await.expect("connect");
    // Past both bounds (accepted after the refusal: the listen queue is first in, first out).
    let mut waiting = TcpStream::connect(app.addr).await.expect("connect");
    waiting.write_all(healthz).await.expect("send");
    // The refusal's client goes away, freeing its place for the waiting connection.
    drop(refused);
    let text = read_answer(&mut waiting).await;
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("\r\nretry-after: 1\r\n"), "{text}");
    assert!(text.contains("\"code\":\"overloaded\""), "{text}");
}

/// Reads one whole answer from `stream` (or what came before it closed), lowercased.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 4096];
        while !complete(&received) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 30 s");
    String::from_utf8_lossy(&received).to_lowercase()
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_is_answered_503_at_the_request_timeout() {
    let app = TestApp::spawn_limited(Limits {
        request_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(
            b"POST /api/webhooks/signalwire HTTP/1.1\r\nHost: api\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event_type\"",
        )
        .await
        .expect("send the head and 13 of 100 bytes");
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 4096];
        while !complete(&received) {
            let n = stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer 30 s after the body stalled");
    let text = String::from_utf8_lossy(&received).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("\r\nretry-after: 1\r\n"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
}

/// Whether `received` holds a response head and the body its `Content-Length` announces.
fn complete(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received).to_lowercase();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}
