//! Scenario 2, inbound ingest: signed SignalWire JSON webhooks with distinct call ids from a
//! closed-loop load generator (32 keep-alive connections by default) into the real api, each
//! fanning out to the one matching configuration. No worker runs, so the api and PostgreSQL
//! are measured alone.

use std::time::Duration;

use super::delivery::count;
use super::machine::{CpuMeter, CpuSplit, DbCounters, backend_pids};
use super::stage::Stage;
use super::{BenchResult, Context, SIGNALWIRE_KEY};
use crate::load::{self, SignalWire, signalwire_call_completed};
use crate::stats::{Percentiles, rate};

/// Unmeasured warm-up before the run (connections opened, caches filled).
const WARM_UP: Duration = Duration::from_secs(1);

/// What the ingest run measured.
#[derive(Debug, Clone)]
pub struct IngestRun {
    /// Successful requests per second.
    pub rps: f64,
    /// Latency of successful requests.
    pub latency: Percentiles,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (transport error, non-200, or not `processed` with 1 delivery).
    pub errors: u64,
    /// A few of the error messages.
    pub error_examples: Vec<String>,
    /// Run length (first start to last answer).
    pub secs: f64,
    /// Inbound `processed` rows afterwards (warm-up included).
    pub inbound_processed: u64,
    /// Outbound `pending` rows afterwards (warm-up included).
    pub outbound_pending: u64,
    /// The api's peak RSS, KiB.
    pub api_peak_kib: u64,
    /// Where the CPU went during the run.
    pub cpu: CpuSplit,
    /// Database work per request (approximate: the warm-up's last statistics may count).
    pub work: String,
}

/// Posts one signed `call.completed` for `call_id`; `Ok(inbound event id)` when the api
/// answered 200 `processed` with exactly one delivery.
pub async fn post_one(sender: &SignalWire, call_id: &str) -> Result<i64, String> {
    let (status, body) = sender
        .post(signalwire_call_completed(call_id, "campaign-1"))
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let processed = body["status"] == "processed" && body["deliveries"] == 1;
    match body["eventId"].as_i64() {
        Some(id) if status == 200 && processed => Ok(id),
        _ => Err(format!("{status}: {body}")),
    }
}

/// Runs the ingest scenario.
pub async fn run(ctx: &Context) -> BenchResult<IngestRun> {
    let connections = ctx.scale.connections;
    let mut stage = Stage::new(ctx, "ingest", 1).await?;
    let http = load::http_client(connections, Duration::from_secs(10))?;
    let base = stage.client.base().to_owned();
    let sender = SignalWire::new(&base, &base, SIGNALWIRE_KEY, http);

    let warm = sender.clone();
    load::closed_loop(connections, WARM_UP, move |i| {
        let warm = warm.clone();
        async move { post_one(&warm, &format!("warm-{i}")).await }
    })
    .await;

    let conn = stage.db.connect(2).await?;
    let counters_before = DbCounters::read(&conn).await?;
    let labels: Vec<(String, u32)> = stage
        .api
        .pid()
        .map(|p| ("api".to_owned(), p))
        .into_iter()
        .collect();
    let meter = CpuMeter::start(&labels);
    let measured = sender.clone();
    let run = load::closed_loop(connections, ctx.scale.ingest, move |i| {
        let sender = measured.clone();
        async move { post_one(&sender, &format!("call-{i}")).await }
    })
    .await;
    let cpu = meter.stop(&backend_pids(&conn).await?);
    let api_peak_kib = stage.api.peak_rss_kib().unwrap_or(0);
    stage.stop_api().await?;
    let ok = run.ok().count() as u64;
    let work = counters_before.per(&DbCounters::read(&conn).await?, ok, "request");
    let inbound_processed = count(
        &conn,
        "SELECT count(*) FROM webhook_events WHERE direction = 'inbound' AND status = 'processed'",
    )
    .await?;
    let outbound_pending = count(
        &conn,
        "SELECT count(*) FROM webhook_events WHERE direction = 'outbound' AND status = 'pending'",
    )
    .await?;
    conn.close().await.ok();

    let result = IngestRun {
        rps: rate(ok, run.elapsed),
        latency: Percentiles::of(&run.ok_latencies()),
        requests: run.samples.len() as u64,
        errors: run.errors().count() as u64,
        error_examples: run.error_examples(3),
        secs: run.elapsed.as_secs_f64(),
        inbound_processed,
        outbound_pending,
        api_peak_kib,
        cpu,
        work,
    };
    stage.finish().await?;
    Ok(result)
}
