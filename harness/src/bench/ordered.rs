//! Scenario 7, ordered delivery: [`KEYS`] calls × [`EVENTS_PER_KEY`] events to one
//! configuration ordered on `/callId`, written through the api's group commit
//! ([`wirehook_api::ingest::record_batch`], which sequences them per key and queues only each
//! key's head), drained by 2 real `worker` processes into the receiver.
//!
//! Figures: deliveries/s (first to last arrival), as a ratio to the unordered 2-worker delivery
//! figure of the same run; the latency ordering adds per event, the gap between the first
//! arrival of an event and that of the one before it in its key (the settle, the release and
//! the next job's pickup: what the key waits that an unordered delivery would not), p50/p99;
//! and how many events first arrived out of their key's order (must be 0). In this backlog
//! drain the added latency is mostly the released event's wait behind the jobs of the other
//! keys queued before it (one round of the 10,000 keys), not the hand-off itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use entity::{EventType, Source};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;
use wirehook_api::ingest::{Disposition, Received, record_batch};
use wirehook_testkit::receiver::{Keep, Reply};

use super::delivery::wait_delivered;
use super::stage::{Stage, stop_workers};
use super::{BenchResult, Context};
use crate::stats::Percentiles;

/// Ordering keys (calls).
pub const KEYS: u64 = 10_000;
/// Events per key.
pub const EVENTS_PER_KEY: u64 = 5;
/// Worker processes.
pub const WORKERS: usize = 2;
/// Events per group-commit statement while filling.
const FILL_BATCH: usize = 1_000;

/// What the ordered run measured.
#[derive(Debug, Clone)]
pub struct OrderedRun {
    /// Events (= deliveries: one configuration).
    pub events: u64,
    /// Distinct deliveries per second, first to last arrival.
    pub rate: f64,
    /// First to last arrival.
    pub secs: f64,
    /// Events `delivered` afterwards.
    pub delivered: u64,
    /// Arrivals beyond the first per id.
    pub duplicates: u64,
    /// Events whose first arrival came after a later event of their key.
    pub out_of_order: u64,
    /// Per event after the first of its key: first arrival minus the previous one's.
    pub added: Percentiles,
}

/// Runs the scenario.
pub async fn run(ctx: &Context) -> BenchResult<OrderedRun> {
    let events = KEYS * EVENTS_PER_KEY;
    let stage = Stage::with_keep(ctx, "ordered", 1, Keep::Arrivals).await?;
    let conn = stage.db.connect(4).await?;
    conn.execute_raw(Statement::from_string(
        conn.get_database_backend(),
        r#"UPDATE webhook_configs SET ordering = '{"key": "/callId", "onStuck": "detach", "maxHoldSeconds": 300}'"#,
    ))
    .await?;
    fill(&conn).await?;

    let mut procs = stage.start_workers(ctx, WORKERS).await?;
    let timeout = Duration::from_secs(120 + events / 200);
    stage.receiver.wait_for_distinct(events, timeout).await;
    // The last arrivals' records may still be on their way.
    let delivered = wait_delivered(&conn, events, Duration::from_secs(30)).await?;
    stop_workers(&mut procs).await?;

    let summary = stage.receiver.summary();
    let secs = match (summary.first_at, summary.last_at) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    let (out_of_order, added) = order_and_gaps(&conn, &stage).await?;
    let run = OrderedRun {
        events,
        rate: if secs > 0.0 {
            summary.distinct as f64 / secs
        } else {
            0.0
        },
        secs,
        delivered,
        duplicates: summary.duplicates,
        out_of_order,
        added,
    };
    conn.close().await.ok();
    stage.finish().await?;
    Ok(run)
}

/// Writes the events through the group commit, round by round (event 1 of every call, then
/// event 2, …), as calls progress side by side.
async fn fill(conn: &DatabaseConnection) -> BenchResult<()> {
    let all: Vec<(u64, u64)> = (1..=EVENTS_PER_KEY)
        .flat_map(|n| (0..KEYS).map(move |k| (k, n)))
        .collect();
    let started = Instant::now();
    for chunk in all.chunks(FILL_BATCH) {
        let items: Vec<Received> = chunk
            .iter()
            .map(|(k, n)| Received {
                source: Source::Platform,
                disposition: Disposition::Deliver(EventType::CallCompleted),
                payload: json!({"callId": format!("bench-call-{k}"), "n": n, "status": "completed"}),
                provider_payload: None,
                dedupe_key: None,
                client_ip: None,
                ordering_key: None,
            })
            .collect();
        for recorded in record_batch(conn, items).await? {
            recorded?;
        }
    }
    eprintln!(
        "ordered: {} events written through the group commit in {:.1?}",
        all.len(),
        started.elapsed()
    );
    Ok(())
}

/// Out-of-order first arrivals, and the gaps between consecutive first arrivals of each key.
async fn order_and_gaps(
    conn: &DatabaseConnection,
    stage: &Stage,
) -> BenchResult<(u64, Percentiles)> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT message_id, ordering_key, ordering_seq FROM webhook_events \
             WHERE direction = 'outbound' AND ordering_key IS NOT NULL",
        ))
        .await?;
    let mut place: HashMap<String, (String, i64)> = HashMap::with_capacity(rows.len());
    for row in rows {
        place.insert(
            row.try_get("", "message_id")?,
            (
                row.try_get("", "ordering_key")?,
                row.try_get("", "ordering_seq")?,
            ),
        );
    }
    let mut firsts: HashMap<&str, Instant> = HashMap::new();
    let journal = stage.receiver.journal();
    for arrival in &journal.arrivals {
        if arrival.reply != Reply::Status(200) {
            continue;
        }
        if let Some(id) = arrival.webhook_id.as_deref() {
            firsts.entry(id).or_insert(arrival.at);
        }
    }
    let mut by_key: HashMap<&str, Vec<(i64, Instant)>> = HashMap::new();
    for (id, at) in &firsts {
        if let Some((key, seq)) = place.get(*id) {
            by_key.entry(key.as_str()).or_default().push((*seq, *at));
        }
    }
    let mut out_of_order = 0;
    let mut gaps = Vec::new();
    for arrivals in by_key.values_mut() {
        arrivals.sort_by_key(|(seq, _)| *seq);
        for pair in arrivals.windows(2) {
            match pair[1].1.checked_duration_since(pair[0].1) {
                Some(gap) => gaps.push(gap),
                None => out_of_order += 1,
            }
        }
    }
    Ok((out_of_order, Percentiles::of(&gaps)))
}
