//! Scenario 6, overload: more than the api can take, with workers delivering. Phase one offers
//! three times the measured ingest capacity (open loop, as providers send) on 384 keep-alive
//! connections opened beforehand; phase two holds 4,096 keep-alive connections (started over
//! one second), each sending its next webhook when answered and waiting the `Retry-After` plus
//! jitter after a 503. The api must take what it can quickly and refuse the rest with
//! `503 overloaded` + `Retry-After`: bounded memory, fast accepted answers, no client timeouts,
//! and every event it answered 200 durable and delivered.
//!
//! Latency runs from the moment a request is written on an open connection to its whole answer;
//! time a request spent in the generator first (waiting for a free connection, or reconnecting
//! after a refusal closed its connection) is reported apart, as the generator's lag.
//!
//! After the load, the phase waits until no outbound event is pending (the queue drained), then
//! checks each accepted event in the database and at the receiver, telling "not delivered yet"
//! (still pending when the wait ran out) from "lost" (not recorded, no delivery queued, or
//! recorded delivered without the receiver having seen it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::Value;

use super::delivery::count;
use super::machine::{CpuMeter, CpuSplit, backend_pids};
use super::stage::{Stage, stop_workers};
use super::{BenchResult, Context, SIGNALWIRE_KEY, ingest};
use crate::load::{self, SignalWire, signalwire_call_completed};
use crate::stats::{Percentiles, rate};
use crate::wire::{self, Wire, WireError};

/// Offered load, in multiples of the measured ingest capacity.
pub const OVERLOAD_FACTOR: f64 = 3.0;
/// Keep-alive connections of the first phase, opened before it starts: within the api's
/// default `MAX_CONNECTIONS` (512) with room for the stage's own client, and more than the
/// rate needs while the api answers quickly (a request finding them all busy waits in the
/// generator, reported as its lag).
const RATE_CONNECTIONS: usize = 384;
/// Client timeout per request (a timeout is a failure of the scenario).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the queue may take to drain after the load.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);
/// Seconds of the capacity measurement when the ingest scenario did not run.
const CAPACITY_SECS: u64 = 5;

/// How the api answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 `processed` with one delivery: the recorded inbound event.
    Accepted(i64),
    /// 503 `overloaded` with `Retry-After`.
    Overloaded,
}

/// The load of a phase.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Open loop at this many requests per second.
    Rate(f64),
    /// Closed loop over this many keep-alive connections, honouring `Retry-After`.
    Connections(usize),
}

impl Load {
    /// How the phase is named in the report.
    pub fn describe(self) -> String {
        match self {
            Self::Rate(r) => format!("{OVERLOAD_FACTOR}× capacity ({r:.0} req/s offered)"),
            Self::Connections(n) => format!("{n} keep-alive connections"),
        }
    }
}

/// What happened to the accepted events.
#[derive(Debug, Clone, Default)]
pub struct Fates {
    /// Delivered in the database and seen by the receiver.
    pub delivered: u64,
    /// Outbound event still pending when the drain wait ended: not delivered yet.
    pub pending: u64,
    /// Outbound event `failed` or `cancelled`.
    pub failed: u64,
    /// Accepted but not in the database, without a delivery, or marked delivered without the
    /// receiver having seen it.
    pub lost: u64,
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    /// The load.
    pub load: Load,
    /// Requests sent.
    pub requests: u64,
    /// Answered 200.
    pub accepted: u64,
    /// Answered 503 `overloaded` with `Retry-After`.
    pub overloaded: u64,
    /// Requests the client gave up on after [`CLIENT_TIMEOUT`].
    pub timeouts: u64,
    /// Any other answer or transport error.
    pub other_errors: u64,
    /// A few of the other errors.
    pub error_examples: Vec<String>,
    /// Run length (first start to last answer).
    pub secs: f64,
    /// Requests written per second on open connections, first due to last written.
    pub written_rps: f64,
    /// How long requests waited in the generator before being written (for a free connection
    /// in phase one, for a new connection after a refusal closed one in phase two).
    pub lag: Percentiles,
    /// Latency of the accepted requests, from the write on an open connection to the whole
    /// answer read.
    pub latency: Percentiles,
    /// Latency of the refusals.
    pub refusal_latency: Percentiles,
    /// The api's peak RSS, KiB.
    pub api_peak_kib: u64,
    /// Largest worker peak RSS, KiB.
    pub worker_peak_kib: u64,
    /// Seconds from the end of the load until no outbound event was pending.
    pub drain_secs: f64,
    /// The accepted events' final states.
    pub fates: Fates,
    /// Where the CPU went during the load.
    pub cpu: CpuSplit,
}

/// What the overload scenario measured.
#[derive(Debug, Clone)]
pub struct OverloadRun {
    /// Ingest capacity, requests/s.
    pub capacity: f64,
    /// Where the capacity figure came from.
    pub capacity_source: String,
    /// The phases, in order.
    pub phases: Vec<Phase>,
}

/// Runs both phases; `capacity` is the ingest scenario's rate of this run, if it ran.
pub async fn run(ctx: &Context, capacity: Option<f64>) -> BenchResult<OverloadRun> {
    raise_open_files_limit(ctx.scale.overload_connections as u64 * 2 + 1024)?;
    let (capacity, capacity_source) = match capacity {
        Some(rps) => (rps, "the ingest scenario of this run".to_owned()),
        None => {
            let mut quick = ctx.clone();
            quick.scale.ingest = Duration::from_secs(CAPACITY_SECS);
            let measured = ingest::run(&quick).await?;
            (
                measured.rps,
                format!(
                    "a {CAPACITY_SECS} s closed-loop ingest run ({} connections, no worker)",
                    ctx.scale.connections
                ),
            )
        }
    };
    let mut phases = Vec::new();
    for load in [
        Load::Rate(capacity * OVERLOAD_FACTOR),
        Load::Connections(ctx.scale.overload_connections),
    ] {
        eprintln!("    overload phase: {}", load.describe());
        phases.push(phase(ctx, load).await?);
    }
    Ok(OverloadRun {
        capacity,
        capacity_source,
        phases,
    })
}

/// Classifies the answer to one signed `call.completed`; `Err` for anything but 200
/// `processed` with one delivery or 503 `overloaded` with `Retry-After` (a client timeout's
/// message starts with `timeout`).
fn classify(answer: Result<wire::Answer, WireError>) -> Result<Answer, String> {
    let answer = answer.map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    match (answer.status, body["eventId"].as_i64()) {
        (200, Some(id)) if body["status"] == "processed" && body["deliveries"] == 1 => {
            Ok(Answer::Accepted(id))
        }
        (503, _) if answer.retry_after && body["error"]["code"] == "overloaded" => {
            Ok(Answer::Overloaded)
        }
        (status, _) => Err(format!(
            "{status} (Retry-After: {}): {body}",
            answer.retry_after
        )),
    }
}

/// How long a client waits after a 503 before request `i`'s successor: the `Retry-After`, plus
/// up to as much again of jitter (spread by `i`), as retrying clients do so that their retries
/// do not arrive together.
fn retry_wait(i: u64) -> Duration {
    let spread = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_secs(wirehook_api::error::RETRY_AFTER_SECS).mul_f64(1.0 + spread)
}

async fn phase(ctx: &Context, load: Load) -> BenchResult<Phase> {
    let name = match load {
        Load::Rate(_) => "overload-rate",
        Load::Connections(_) => "overload-connections",
    };
    let mut stage = Stage::new(ctx, name, 1).await?;
    let mut workers = stage.start_workers(ctx, ctx.scale.e2e_workers).await?;
    let base = stage.client.base().to_owned();
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| format!("api address {base}: {e}"))?;
    let sender = SignalWire::new(&base, &base, SIGNALWIRE_KEY, reqwest::Client::new());
    let conn = stage.db.connect(2).await?;
    let mut labels: Vec<(String, u32)> = workers
        .iter()
        .filter_map(|p| p.pid())
        .map(|pid| ("worker".to_owned(), pid))
        .collect();
    labels.extend(stage.api.pid().map(|p| ("api".to_owned(), p)));
    let meter = CpuMeter::start(&labels);
    let duration = ctx.scale.overload;
    let run = match load {
        Load::Rate(rate) => {
            // Opened before the clock starts, so the load is requests on open connections.
            let mut wires: Vec<Wire> = (0..RATE_CONNECTIONS).map(|_| Wire::to(addr)).collect();
            for wire in &mut wires {
                wire.ready().await.map_err(|e| e.to_string())?;
            }
            load::paced_on_wires(
                rate,
                duration,
                wires,
                CLIENT_TIMEOUT,
                move |i| {
                    sender.wire_request(signalwire_call_completed(
                        &format!("rate-{i}"),
                        "campaign-1",
                    ))
                },
                classify,
            )
            .await
        }
        Load::Connections(n) => {
            load::closed_loop_on_wires(
                (0..n).map(|_| Wire::to(addr)).collect(),
                Duration::from_secs(wirehook_api::error::RETRY_AFTER_SECS),
                duration,
                CLIENT_TIMEOUT,
                move |i| {
                    sender.wire_request(signalwire_call_completed(
                        &format!("conn-{i}"),
                        "campaign-1",
                    ))
                },
                classify,
                |i, outcome| (*outcome == Ok(Answer::Overloaded)).then(|| retry_wait(i)),
            )
            .await
        }
    };
    let cpu = meter.stop(&backend_pids(&conn).await?);
    let api_peak_kib = stage.api.peak_rss_kib().unwrap_or(0);

    let accepted: Vec<i64> = run
        .samples
        .iter()
        .filter_map(|s| match s.outcome {
            Ok(Answer::Accepted(id)) => Some(id),
            _ => None,
        })
        .collect();
    let drained = Instant::now();
    wait_drained(&conn).await?;
    let drain_secs = drained.elapsed().as_secs_f64();
    let fates = fates(&conn, &stage, &accepted).await?;
    conn.close().await.ok();
    let worker_peak_kib = stop_workers(&mut workers).await?;

    let latency_of = |want: fn(&Answer) -> bool| {
        Percentiles::of(
            &run.samples
                .iter()
                .filter(|s| s.outcome.as_ref().is_ok_and(want))
                .map(|s| s.latency())
                .collect::<Vec<_>>(),
        )
    };
    let errors: Vec<&String> = run
        .samples
        .iter()
        .filter_map(|s| s.outcome.as_ref().err())
        .collect();
    let timeouts = errors.iter().filter(|e| e.starts_with("timeout")).count() as u64;
    let first_due = run.samples.iter().map(|s| s.due).min();
    let last_write = run.samples.iter().map(|s| s.started_at).max();
    let written_rps = match (first_due, last_write) {
        (Some(first), Some(last)) => rate(run.samples.len() as u64, last - first),
        _ => 0.0,
    };
    let result = Phase {
        load,
        requests: run.samples.len() as u64,
        accepted: accepted.len() as u64,
        overloaded: run
            .samples
            .iter()
            .filter(|s| s.outcome == Ok(Answer::Overloaded))
            .count() as u64,
        timeouts,
        other_errors: errors.len() as u64 - timeouts,
        error_examples: run.error_examples(3),
        secs: run.elapsed.as_secs_f64(),
        written_rps,
        lag: Percentiles::of(&run.samples.iter().map(|s| s.lag()).collect::<Vec<_>>()),
        latency: latency_of(|a| matches!(a, Answer::Accepted(_))),
        refusal_latency: latency_of(|a| *a == Answer::Overloaded),
        api_peak_kib,
        worker_peak_kib,
        drain_secs,
        fates,
        cpu,
    };
    stage.finish().await?;
    Ok(result)
}

impl Phase {
    /// Accepted requests per second over the phase.
    pub fn accepted_rps(&self) -> f64 {
        rate(self.accepted, Duration::from_secs_f64(self.secs))
    }

    /// Answered requests (of any kind) per second over the phase.
    pub fn answered_rps(&self) -> f64 {
        rate(self.requests, Duration::from_secs_f64(self.secs))
    }
}

/// Waits until no outbound event is pending, or [`DRAIN_LIMIT`] has passed.
async fn wait_drained(conn: &DatabaseConnection) -> BenchResult<()> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < deadline {
        let pending = count(
            conn,
            "SELECT count(*) FROM webhook_events \
             WHERE direction = 'outbound' AND status = 'pending'",
        )
        .await?;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The final state of each accepted inbound event's delivery.
async fn fates(conn: &DatabaseConnection, stage: &Stage, accepted: &[i64]) -> BenchResult<Fates> {
    let ids: Vec<String> = accepted.iter().map(i64::to_string).collect();
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT a.id, i.id IS NOT NULL, o.status::text, o.message_id \
             FROM unnest($1::bigint[]) AS a(id) \
             LEFT JOIN webhook_events i ON i.id = a.id AND i.direction = 'inbound' \
             LEFT JOIN webhook_events o ON o.parent_event_id = a.id \
                  AND o.direction = 'outbound'",
            [format!("{{{}}}", ids.join(",")).into()],
        ))
        .await?;
    let mut fates = Fates::default();
    for row in rows {
        let recorded: bool = row.try_get_by_index(1)?;
        let status: Option<String> = row.try_get_by_index(2)?;
        let message_id: Option<String> = row.try_get_by_index(3)?;
        match (recorded, status.as_deref(), message_id) {
            (true, Some("delivered"), Some(id)) if stage.receiver.seen(&id).is_some() => {
                fates.delivered += 1
            }
            (true, Some("pending"), _) => fates.pending += 1,
            (true, Some("failed" | "cancelled"), _) => fates.failed += 1,
            _ => fates.lost += 1,
        }
    }
    Ok(fates)
}

/// Raises this process's soft limit of open files towards `wanted` (at most the hard limit),
/// so the load generator can hold its connections; the api started afterwards inherits it.
fn raise_open_files_limit(wanted: u64) -> BenchResult<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if limit.rlim_cur >= wanted {
        return Ok(());
    }
    limit.rlim_cur = wanted.min(limit.rlim_max);
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if limit.rlim_cur < wanted {
        return Err(format!(
            "open files limited to {} (hard limit); the overload scenario needs {wanted}",
            limit.rlim_cur
        )
        .into());
    }
    Ok(())
}
