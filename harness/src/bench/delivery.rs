//! Scenario 1, delivery throughput: N pending outbound events over several configurations,
//! enqueued through the real [`wirehook_core::queue::enqueue`], drained by 1 or 2 real
//! `worker` processes (default concurrency) into the receiver, which answers 200 on
//! keep-alive connections and checks every signature.
//!
//! The rate is distinct deliveries over the time from the first to the last arrival at the
//! receiver; afterwards every event must be `delivered` in the database, and duplicates are
//! arrivals beyond the first per `webhook-id`.

use std::time::{Duration, Instant};

use entity::{ConfigId, Source};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use serde_json::json;
use wirehook_core::queue::{NewDelivery, enqueue};

use super::machine::{CpuMeter, CpuSplit, DbCounters, TableCounters, backend_pids};
use super::stage::{Stage, stop_workers};
use super::{BenchResult, Context};
use crate::stats::rate;

/// Events per enqueue transaction.
const ENQUEUE_BATCH: usize = 1_000;

/// What one delivery run measured.
#[derive(Debug, Clone)]
pub struct DeliveryRun {
    /// Worker processes.
    pub workers: usize,
    /// Events enqueued.
    pub events: u64,
    /// Enqueue rate, events/s (events + jobs, `ENQUEUE_BATCH` per transaction).
    pub enqueue_rate: f64,
    /// Distinct deliveries per second, first to last arrival.
    pub rate: f64,
    /// First to last arrival.
    pub secs: f64,
    /// Distinct `webhook-id`s received.
    pub distinct: u64,
    /// Arrivals beyond the first per id.
    pub duplicates: u64,
    /// Arrivals whose signature did not verify.
    pub bad_signatures: u64,
    /// Events `delivered` in the database afterwards.
    pub delivered: u64,
    /// Outbound events by status afterwards (`status count, …`).
    pub statuses: String,
    /// The largest worker peak RSS, KiB.
    pub worker_peak_kib: u64,
    /// Where the CPU went while the workers drained.
    pub cpu: CpuSplit,
    /// Database work per delivery.
    pub work: String,
    /// Per-table work per delivery (a Markdown table).
    pub tables: String,
}

/// Runs one delivery scenario with `workers` worker processes.
pub async fn run(ctx: &Context, workers: usize) -> BenchResult<DeliveryRun> {
    let events = ctx.scale.events;
    let stage = Stage::new(ctx, &format!("delivery-{workers}w"), ctx.scale.configs).await?;
    let filler = stage.db.connect(4).await?;
    let enqueue_started = Instant::now();
    fill(&filler, &stage, events).await?;
    let enqueue_rate = rate(events, enqueue_started.elapsed());
    // Closing flushes the fill's statistics, so the counters below see only the workers.
    filler.close().await.ok();
    let conn = stage.db.connect(2).await?;
    let counters_before = DbCounters::read(&conn).await?;
    let tables_before = TableCounters::read(&conn).await?;

    let mut procs = stage.start_workers(ctx, workers).await?;
    let labels: Vec<(String, u32)> = procs
        .iter()
        .filter_map(|p| p.pid())
        .map(|pid| ("worker".to_owned(), pid))
        .collect();
    let meter = CpuMeter::start(&labels);
    let timeout = Duration::from_secs(60 + events / 500);
    stage.receiver.wait_for_distinct(events, timeout).await;
    let cpu = meter.stop(&backend_pids(&conn).await?);
    let delivered = wait_delivered(&conn, events, Duration::from_secs(30)).await?;
    let statuses = statuses(&conn).await?;
    let worker_peak_kib = stop_workers(&mut procs).await?;
    // Exited backends have flushed their statistics.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let work = counters_before.per(&DbCounters::read(&conn).await?, delivered, "delivery");
    let tables = tables_before.per(&TableCounters::read(&conn).await?, delivered, "delivery");

    let summary = stage.receiver.summary();
    let secs = match (summary.first_at, summary.last_at) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    let run = DeliveryRun {
        workers,
        events,
        enqueue_rate,
        rate: if secs > 0.0 {
            summary.distinct as f64 / secs
        } else {
            0.0
        },
        secs,
        distinct: summary.distinct,
        duplicates: summary.duplicates,
        bad_signatures: summary.bad_signatures,
        delivered,
        statuses,
        worker_peak_kib,
        cpu,
        work,
        tables,
    };
    conn.close().await.ok();
    stage.finish().await?;
    Ok(run)
}

/// Enqueues `events` pending deliveries spread round-robin over the stage's configurations.
async fn fill(conn: &DatabaseConnection, stage: &Stage, events: u64) -> BenchResult<()> {
    let configs: Vec<ConfigId> = stage.configs.iter().map(|c| ConfigId(c.id)).collect();
    let mut next = 0u64;
    while next < events {
        let batch: Vec<NewDelivery> = (next..events.min(next + ENQUEUE_BATCH as u64))
            .map(|i| NewDelivery {
                config_id: configs[(i % configs.len() as u64) as usize],
                source: Source::SignalWire,
                event_type: "call.completed".to_owned(),
                payload: json!({
                    "callId": format!("bench-call-{i}"),
                    "from": "+18005551234",
                    "to": "+18005557890",
                    "status": "completed",
                    "duration": 42,
                    "campaignId": "campaign-1",
                }),
                parent_event_id: None,
            })
            .collect();
        next += batch.len() as u64;
        let txn = conn.begin().await?;
        enqueue(&txn, batch).await?;
        txn.commit().await?;
    }
    Ok(())
}

/// Waits until `expected` outbound events are `delivered` (or `timeout`); returns the count.
pub(super) async fn wait_delivered(
    conn: &DatabaseConnection,
    expected: u64,
    timeout: Duration,
) -> BenchResult<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let delivered = count(
            conn,
            "SELECT count(*) FROM webhook_events WHERE direction = 'outbound' AND status = 'delivered'",
        )
        .await?;
        if delivered >= expected || Instant::now() >= deadline {
            return Ok(delivered);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `count(*)` of a query.
pub async fn count(conn: &DatabaseConnection, sql: &str) -> BenchResult<u64> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?;
    let n = row.map_or(Ok(0), |r| r.try_get_by_index::<i64>(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn statuses(conn: &DatabaseConnection) -> BenchResult<String> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT status || ' ' || count(*) FROM webhook_events WHERE direction = 'outbound' \
             GROUP BY status ORDER BY status",
        ))
        .await?;
    let parts = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(", "))
}
