//! Scenario `scale`: how far more replicas go against one primary. For 1, 2 and 4 worker
//! replicas with 1 and 2 api replicas, signed SignalWire webhooks go into the apis from a closed
//! loop (the bench's connections, spread evenly over the apis) while the workers deliver each
//! one to the receiver; over a measured window after a warm-up it reports ingest/s, deliveries/s
//! and the primary's CPU per delivered event.
//!
//! The primary is a throwaway cluster of its own with PostgreSQL's durability defaults
//! (`fsync`, `synchronous_commit` on), so that every process of that cluster (backends, WAL
//! writer, checkpointer, autovacuum) is the primary's CPU and no other database's work counts.
//! A fresh database per step; replicas run with their defaults. The processes share the
//! machine with the primary, so a step that saturates the machine shows it in the "machine
//! busy" column rather than in the primary's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wirehook_testkit::cluster::{Cluster, Durability};
use wirehook_testkit::db::TestDb;
use wirehook_testkit::receiver::{Keep, Receiver, Route};

use super::ingest::post_one;
use super::machine::{machine_busy_secs, postgres_cpu_by_pid, process_parent};
use super::stage::{STOP_GRACE, stop_workers};
use super::{BenchResult, Context, DB_PREFIX, SIGNALWIRE_KEY};
use crate::load::{self, SignalWire};
use crate::procs::{Proc, ProcSpec, free_local_addr};
use crate::rest::{ApiClient, NewConfig};
use crate::stats::rate;

/// Worker replicas of the steps, each with every api count of [`API_REPLICAS`].
pub const WORKER_REPLICAS: [usize; 3] = [1, 2, 4];
/// Api replicas of the steps.
pub const API_REPLICAS: [usize; 2] = [1, 2];
/// Load before the measured window, so pools, caches and the ingest bound have settled.
const WARM_UP: Duration = Duration::from_secs(2);

/// What one step measured.
#[derive(Debug, Clone)]
pub struct Step {
    /// Worker replicas.
    pub workers: usize,
    /// Api replicas.
    pub apis: usize,
    /// Webhooks accepted per second in the window.
    pub ingest: f64,
    /// Distinct deliveries arriving at the receiver per second in the window.
    pub deliveries: f64,
    /// Webhooks the apis refused or failed in the window (503 `overloaded` among them).
    pub refused: u64,
    /// Accepted but not yet delivered at the end of the window, minus at its start: the
    /// backlog the workers did not keep up with.
    pub backlog_growth: i64,
    /// CPU seconds of the primary's processes per second of the window (cores busy).
    pub primary_cores: f64,
    /// The primary's CPU per delivered event, ms.
    pub primary_ms_per_delivery: f64,
    /// CPU of the whole machine per second of the window (cores busy, everyone's).
    pub machine_cores: f64,
    /// The window, s.
    pub secs: f64,
}

/// What the scenario measured.
#[derive(Debug, Clone)]
pub struct ScaleRun {
    /// One per (workers, apis), in the order run.
    pub steps: Vec<Step>,
    /// The primary's settings that matter here.
    pub primary: String,
}

/// Runs every step on one throwaway primary.
pub async fn run(ctx: &Context) -> BenchResult<ScaleRun> {
    let cluster = Cluster::start(Durability::Production).await?;
    let postmaster = cluster
        .postmaster_pid()
        .ok_or("cannot read the primary's postmaster.pid")?;
    let mut steps = Vec::new();
    for workers in WORKER_REPLICAS {
        for apis in API_REPLICAS {
            eprintln!("    {workers} worker(s), {apis} api(s)");
            steps.push(step(ctx, &cluster, postmaster, workers, apis).await?);
        }
    }
    let primary = format!(
        "PostgreSQL cluster of its own on 127.0.0.1 with fsync, full_page_writes and \
         synchronous_commit on, max_connections 300 (scripts/pg-local.sh, \
         WIREHOOK_PG_DURABLE=full); {} s warm-up and {} s measured per step, {} closed-loop \
         connections spread over the apis.",
        WARM_UP.as_secs(),
        ctx.scale.scale_step.as_secs(),
        ctx.scale.connections
    );
    drop(cluster);
    Ok(ScaleRun { steps, primary })
}

async fn step(
    ctx: &Context,
    cluster: &Cluster,
    postmaster: u32,
    workers: usize,
    apis: usize,
) -> BenchResult<Step> {
    let name = format!("scale-{workers}w-{apis}a");
    let db = TestDb::create(&cluster.url(), DB_PREFIX).await?;
    ctx.binaries.migrate(db.url()).await?;
    let receiver = Receiver::start(Keep::Counts).await?;

    let mut api_procs = Vec::with_capacity(apis);
    let mut senders = Vec::with_capacity(apis);
    let mut addrs = Vec::with_capacity(apis);
    let http = load::http_client(ctx.scale.connections, Duration::from_secs(10))?;
    for i in 0..apis {
        let addr = free_local_addr()?;
        let spec = ProcSpec::api(
            &format!("{name}-api-{i}"),
            db.url(),
            addr,
            &ctx.api_env(),
            &ctx.log_dir,
        );
        api_procs.push(Proc::start(&ctx.binaries, spec).await?);
        addrs.push(addr);
        let base = format!("http://{addr}");
        senders.push(SignalWire::new(&base, &base, SIGNALWIRE_KEY, http.clone()));
    }
    let first = *addrs.first().ok_or("no api replica")?;
    let client = ApiClient::new(&ctx.binaries, first, super::JWT_SECRET).await?;
    let config = NewConfig::new(
        &format!("bench {name}"),
        &receiver.url("/c/0"),
        &["call.completed"],
    );
    receiver.set_route("/c/0", Route::ok().signed_with(&config.secret)?);
    client.create_config(&config).await?;

    let starts = (0..workers).map(|i| {
        let spec = ProcSpec::worker(
            &format!("{name}-worker-{i}"),
            db.url(),
            free_local_addr()?,
            &ctx.worker_env(),
            &ctx.log_dir,
        );
        Ok::<_, std::io::Error>(Proc::start(&ctx.binaries, spec))
    });
    let starts = starts.collect::<Result<Vec<_>, _>>()?;
    let mut worker_procs = futures::future::try_join_all(starts).await?;

    // One closed loop over warm-up and window; the window's figures are differences of
    // counters read when it starts and ends.
    let senders = std::sync::Arc::new(senders);
    let loop_senders = senders.clone();
    let window = ctx.scale.scale_step;
    let load = tokio::spawn(load::closed_loop(
        ctx.scale.connections,
        WARM_UP + window,
        move |i| {
            let senders = loop_senders.clone();
            async move {
                let sender = &senders[(i % senders.len() as u64) as usize];
                post_one(sender, &format!("scale-{i}")).await
            }
        },
    ));
    tokio::time::sleep(WARM_UP).await;
    let started = Instant::now();
    let delivered_before = receiver.summary().distinct;
    let cpu_before = cluster_cpu(postmaster);
    let machine_before = machine_busy_secs();
    tokio::time::sleep(window).await;
    let delivered_after = receiver.summary().distinct;
    let cpu_after = cluster_cpu(postmaster);
    let machine_after = machine_busy_secs();
    let secs = started.elapsed().as_secs_f64();
    let run = load.await?;

    let window_end = started + Duration::from_secs_f64(secs);
    let in_window = |at: Instant| at >= started && at <= window_end;
    let accepted_in_window = run.ok().filter(|s| in_window(s.answered_at)).count() as u64;
    let accepted_before = run.ok().filter(|s| s.answered_at < started).count() as u64;
    let refused = run.errors().filter(|s| in_window(s.answered_at)).count() as u64;
    let delivered = delivered_after.saturating_sub(delivered_before);
    let primary_cpu: f64 = cpu_after
        .iter()
        .map(|(pid, now)| now - cpu_before.get(pid).copied().unwrap_or(0.0))
        .sum();

    stop_workers(&mut worker_procs).await?;
    for api in &mut api_procs {
        api.terminate(STOP_GRACE).await?;
    }
    db.drop_now().await?;

    let backlog_start = accepted_before as i64 - delivered_before as i64;
    let backlog_end = (accepted_before + accepted_in_window) as i64 - delivered_after as i64;
    Ok(Step {
        workers,
        apis,
        ingest: rate(accepted_in_window, Duration::from_secs_f64(secs)),
        deliveries: rate(delivered, Duration::from_secs_f64(secs)),
        refused,
        backlog_growth: backlog_end - backlog_start,
        primary_cores: primary_cpu / secs,
        primary_ms_per_delivery: if delivered > 0 {
            primary_cpu * 1000.0 / delivered as f64
        } else {
            0.0
        },
        machine_cores: (machine_after - machine_before) / secs,
        secs,
    })
}

/// CPU seconds so far of the cluster's processes: its postmaster and every child of it.
fn cluster_cpu(postmaster: u32) -> HashMap<u32, f64> {
    postgres_cpu_by_pid()
        .into_iter()
        .filter(|(pid, _)| *pid == postmaster || process_parent(*pid) == Some(postmaster))
        .collect()
}

/// The Markdown table of the steps.
pub fn table(run: &ScaleRun) -> String {
    let mut out = String::from(
        "| workers | apis | ingest/s | deliveries/s | backlog growth | refused | primary CPU (cores) | primary CPU per delivery | machine busy (cores) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in &run.steps {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:+} | {} | {:.2} | {:.3} ms | {:.2} |\n",
            s.workers,
            s.apis,
            s.ingest,
            s.deliveries,
            s.backlog_growth,
            s.refused,
            s.primary_cores,
            s.primary_ms_per_delivery,
            s.machine_cores
        ));
    }
    out
}
