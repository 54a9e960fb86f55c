//! Scenario 3, end-to-end latency: signed SignalWire webhooks at a fixed rate (half the
//! measured ingest rate) into the api while worker processes deliver; for each request, the
//! time from the api's answer to the provider until the receiver got the signed delivery.
//!
//! A request is matched to its delivery through the database (the outbound event whose
//! `parent_event_id` is the inbound event id the api answered with, and its message id, which
//! the receiver saw as `webhook-id`). A delivery that arrives before the provider has read the
//! answer counts as 0.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};

use super::ingest::post_one;
use super::machine::{CpuMeter, CpuSplit, backend_pids};
use super::stage::{Stage, stop_workers};
use super::{BenchResult, Context, SIGNALWIRE_KEY};
use crate::load::{self, SignalWire};
use crate::stats::Percentiles;

/// What the end-to-end run measured.
#[derive(Debug, Clone)]
pub struct E2eRun {
    /// Requests per second offered.
    pub rate: f64,
    /// Worker processes.
    pub workers: usize,
    /// Requests sent.
    pub requests: u64,
    /// Requests the api did not accept.
    pub errors: u64,
    /// When those were due, in seconds into the run: how many in each second.
    pub errors_per_second: Vec<u64>,
    /// The first few distinct reasons they were not accepted.
    pub error_examples: Vec<String>,
    /// Accepted requests whose delivery never arrived.
    pub lost: u64,
    /// Deliveries that arrived before the provider read the api's answer.
    pub before_answer: u64,
    /// Answer → delivery.
    pub latency: Percentiles,
    /// Latency of the api's answers during the run.
    pub ingest_latency: Percentiles,
    /// Job due (`apalis.jobs.run_at`, the api's commit) → claimed by a worker (`lock_at`).
    pub queue_wait: Percentiles,
    /// Claimed → arrived at the receiver.
    pub claim_to_arrival: Percentiles,
    /// Largest worker peak RSS, KiB.
    pub worker_peak_kib: u64,
    /// The api's peak RSS, KiB.
    pub api_peak_kib: u64,
    /// Where the CPU went during the run.
    pub cpu: CpuSplit,
}

/// Runs the end-to-end scenario at `rate` requests per second.
pub async fn run(ctx: &Context, rate: f64) -> BenchResult<E2eRun> {
    let workers = ctx.scale.e2e_workers;
    let mut stage = Stage::new(ctx, "e2e", 1).await?;
    let mut procs = stage.start_workers(ctx, workers).await?;
    let http = load::http_client(ctx.scale.connections, Duration::from_secs(10))?;
    let base = stage.client.base().to_owned();
    let sender = SignalWire::new(&base, &base, SIGNALWIRE_KEY, http);

    let mut labels: Vec<(String, u32)> = procs
        .iter()
        .filter_map(|p| p.pid())
        .map(|pid| ("worker".to_owned(), pid))
        .collect();
    labels.extend(stage.api.pid().map(|p| ("api".to_owned(), p)));
    let conn = stage.db.connect(2).await?;
    let meter = CpuMeter::start(&labels);
    let paced_sender = sender.clone();
    let run = load::paced(rate, ctx.scale.e2e, move |i| {
        let sender = paced_sender.clone();
        async move { post_one(&sender, &format!("e2e-{i}")).await }
    })
    .await;
    let accepted: Vec<(i64, Instant)> = run
        .ok()
        .filter_map(|s| s.outcome.as_ref().ok().map(|id| (*id, s.answered_at)))
        .collect();
    stage
        .receiver
        .wait_for_distinct(accepted.len() as u64, Duration::from_secs(60))
        .await;
    let cpu = meter.stop(&backend_pids(&conn).await?);
    conn.close().await.ok();
    let api_peak_kib = stage.api.peak_rss_kib().unwrap_or(0);
    let worker_peak_kib = stop_workers(&mut procs).await?;

    let outbound = outbound_of(&stage, &accepted).await?;
    let jobs = job_times(&stage).await?;
    // The receiver's instants on the database's (same machine's) wall clock.
    let (anchor_instant, anchor_utc) = (Instant::now(), Utc::now());
    let wall = |at: Instant| anchor_utc - (anchor_instant - at);
    let mut latencies = Vec::with_capacity(accepted.len());
    let (mut queue_wait, mut claim_to_arrival) = (Vec::new(), Vec::new());
    let (mut lost, mut before_answer) = (0, 0);
    for (event_id, answered_at) in &accepted {
        let Some(delivery) = outbound.get(event_id) else {
            lost += 1;
            continue;
        };
        let Some(seen) = stage.receiver.seen(&delivery.message_id) else {
            lost += 1;
            continue;
        };
        let latency = seen.first_at.checked_duration_since(*answered_at);
        if latency.is_none() {
            before_answer += 1;
        }
        latencies.push(latency.unwrap_or(Duration::ZERO));
        if let Some((run_at, Some(lock_at))) = jobs.get(&delivery.event_id) {
            queue_wait.push((*lock_at - *run_at).to_std().unwrap_or_default());
            claim_to_arrival.push(
                (wall(seen.first_at) - *lock_at)
                    .to_std()
                    .unwrap_or_default(),
            );
        }
    }
    let result = E2eRun {
        rate,
        workers,
        requests: run.samples.len() as u64,
        errors: run.errors().count() as u64,
        errors_per_second: errors_per_second(&run),
        error_examples: run.error_examples(3),
        lost,
        before_answer,
        latency: Percentiles::of(&latencies),
        ingest_latency: Percentiles::of(&run.ok_latencies()),
        queue_wait: Percentiles::of(&queue_wait),
        claim_to_arrival: Percentiles::of(&claim_to_arrival),
        worker_peak_kib,
        api_peak_kib,
        cpu,
    };
    if result.errors > 0 {
        eprintln!(
            "      not accepted, per second of the run: {:?}; {:?}",
            result.errors_per_second, result.error_examples
        );
    }
    stage.finish().await?;
    Ok(result)
}

/// How many of `run`'s requests not accepted were due in each second of it.
fn errors_per_second<T>(run: &load::Run<T>) -> Vec<u64> {
    let Some(start) = run.samples.iter().map(|s| s.due).min() else {
        return Vec::new();
    };
    let mut seconds = Vec::new();
    for sample in run.errors() {
        let second = sample.due.duration_since(start).as_secs() as usize;
        if seconds.len() <= second {
            seconds.resize(second + 1, 0);
        }
        seconds[second] += 1;
    }
    seconds
}

/// The outbound event created for an inbound one.
struct Outbound {
    event_id: i64,
    message_id: String,
}

/// Inbound event id → its (one) outbound event.
async fn outbound_of(
    stage: &Stage,
    accepted: &[(i64, Instant)],
) -> BenchResult<HashMap<i64, Outbound>> {
    let conn = stage.db.connect(2).await?;
    let ids: Vec<String> = accepted.iter().map(|(id, _)| id.to_string()).collect();
    let ids = format!("{{{}}}", ids.join(","));
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            // A join on `unnest` without a `direction` test (only deliveries have a parent), as
            // the soak's lookups: with `= ANY` of ~20,000 ids on a freshly written table the
            // plan tested the array row by row (30 s seen).
            "SELECT e.parent_event_id, e.id, e.message_id \
             FROM unnest($1::bigint[]) AS p(id) \
             JOIN webhook_events e ON e.parent_event_id = p.id",
            [ids.into()],
        ))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(
            row.try_get_by_index::<i64>(0)?,
            Outbound {
                event_id: row.try_get_by_index::<i64>(1)?,
                message_id: row.try_get_by_index::<String>(2)?,
            },
        );
    }
    conn.close().await.ok();
    Ok(out)
}

/// Outbound event id → (`run_at`, `lock_at`) of its delivery job.
async fn job_times(
    stage: &Stage,
) -> BenchResult<HashMap<i64, (DateTime<Utc>, Option<DateTime<Utc>>)>> {
    let conn = stage.db.connect(2).await?;
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            // A job holds one event (`{"v":1,"event_id":N}`) or several (`"v":2,"event_ids"`):
            // the api's group commit puts the deliveries of concurrent requests in one job.
            "SELECT e.id::bigint, j.run_at, j.lock_at \
             FROM apalis.jobs j \
             CROSS JOIN LATERAL (SELECT convert_from(j.job, 'UTF8')::jsonb AS p) AS payload \
             CROSS JOIN LATERAL jsonb_array_elements_text(COALESCE(payload.p->'event_ids', \
                  jsonb_build_array(payload.p->'event_id'))) AS e(id) \
             WHERE j.job_type = $1",
            [wirehook_core::job::QUEUE.into()],
        ))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(
            row.try_get_by_index::<i64>(0)?,
            (
                row.try_get_by_index::<DateTime<Utc>>(1)?,
                row.try_get_by_index::<Option<DateTime<Utc>>>(2)?,
            ),
        );
    }
    conn.close().await.ok();
    Ok(out)
}

/// The p99 a rate must keep (with nothing lost or refused) to be within capacity.
pub const CAPACITY_P99: Duration = Duration::from_millis(100);
/// Factor between a passing rate and the next one tried.
const CAPACITY_STEP_UP: f64 = 1.25;
/// Most end-to-end runs one capacity search makes.
const CAPACITY_MAX_STEPS: usize = 8;

/// One rate tried by the capacity search.
#[derive(Debug, Clone)]
pub struct CapacityStep {
    /// Requests per second offered.
    pub rate: f64,
    /// Answer → delivery p99.
    pub p99: Duration,
    /// Accepted but never delivered.
    pub lost: u64,
    /// Not accepted.
    pub errors: u64,
}

impl CapacityStep {
    /// Whether the rate is within capacity: p99 under [`CAPACITY_P99`], nothing lost or refused.
    pub fn passed(&self) -> bool {
        self.p99 < CAPACITY_P99 && self.lost == 0 && self.errors == 0
    }
}

/// What the capacity search found.
#[derive(Debug, Clone, Default)]
pub struct Capacity {
    /// The highest rate that passed, if any did.
    pub rate: Option<f64>,
    /// Every rate tried, in order.
    pub steps: Vec<CapacityStep>,
}

/// The end-to-end capacity: short end-to-end runs from `start` requests/s, up by
/// [`CAPACITY_STEP_UP`] while they pass, down while they fail; once a pass and a fail are
/// known, one more run halfway between (geometrically) narrows it.
pub async fn capacity(ctx: &Context, start: f64) -> BenchResult<Capacity> {
    let mut found = Capacity::default();
    let (mut pass, mut fail): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = start.max(1.0);
    while found.steps.len() < CAPACITY_MAX_STEPS {
        eprintln!("    capacity: {rate:.0} requests/s");
        let run = run(ctx, rate).await?;
        let step = CapacityStep {
            rate,
            p99: run.latency.p99,
            lost: run.lost,
            errors: run.errors,
        };
        eprintln!(
            "    capacity: {rate:.0}/s p99 {:.1} ms, lost {}, refused {}: {}",
            crate::stats::ms(step.p99),
            step.lost,
            step.errors,
            if step.passed() { "within" } else { "beyond" }
        );

        if step.passed() {
            pass = Some(pass.map_or(rate, |p: f64| p.max(rate)));
        } else {
            fail = Some(fail.map_or(rate, |f: f64| f.min(rate)));
        }
        found.steps.push(step);
        rate = match (pass, fail) {
            (Some(p), Some(f)) if f / p > 1.06 && found.steps.len() < CAPACITY_MAX_STEPS => {
                let mid = (p * f).sqrt();
                if found.steps.iter().any(|s| (s.rate - mid).abs() < 1.0) {
                    break;
                }
                mid
            }
            (Some(_), Some(_)) => break,
            (Some(p), None) => p * CAPACITY_STEP_UP,
            (None, Some(f)) => f / CAPACITY_STEP_UP,
            (None, None) => break,
        };
    }
    found.rate = pass;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(p99_ms: u64, lost: u64, errors: u64) -> CapacityStep {
        CapacityStep {
            rate: 1000.0,
            p99: Duration::from_millis(p99_ms),
            lost,
            errors,
        }
    }

    #[test]
    fn a_rate_is_within_capacity_only_under_the_p99_bound_with_nothing_lost_or_refused() {
        assert!(step(99, 0, 0).passed());
        assert!(!step(100, 0, 0).passed());
        assert!(!step(10, 1, 0).passed());
        assert!(!step(10, 0, 1).passed());
    }
}
