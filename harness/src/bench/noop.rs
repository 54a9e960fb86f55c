//! The second delivery baseline: a no-op apalis worker with the worker's own backend and storage
//! settings ([`wirehook_core::queue::backend::DeliveryBackend`],
//! [`wirehook_worker::runtime::storage_config`], default concurrency 32) draining
//! the same number of jobs, in a process of its own (`bench noop-drain`, so its memory is
//! its own too).
//!
//! Its rate is what apalis itself allows on this machine before the engine does any work of
//! its own; its peak RSS is the floor of a tokio + sqlx + apalis process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use apalis::prelude::{BoxDynError, Data, WorkerBuilder, WorkerBuilderExt, WorkerContext};
use entity::EventId;
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use wirehook_core::queue::{Due, push_jobs};
use wirehook_core::settings::WorkerSettings;
use wirehook_testkit::db::{self, TestDb};

use super::{BenchResult, Context, DB_PREFIX};

/// Jobs inserted per statement when filling the queue.
const ENQUEUE_BATCH: usize = 5_000;

/// What a drain measured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Drained {
    /// Jobs run.
    pub jobs: u64,
    /// From the first job's start to the last one's.
    pub secs: f64,
    /// Jobs per second over that interval.
    pub rate: f64,
    /// Peak RSS of the drain process, KiB.
    pub vm_hwm_kib: u64,
    /// The concurrency it ran with.
    pub concurrency: usize,
}

/// Runs the drain as its own process (this binary's `noop-drain`) on a fresh database.
pub async fn run(ctx: &Context) -> BenchResult<Drained> {
    let db = TestDb::create(&ctx.admin_url, DB_PREFIX).await?;
    ctx.binaries.migrate(db.url()).await?;
    let output = Command::new(&ctx.self_exe)
        .args(["noop-drain", "--database-url", db.url(), "--jobs"])
        .arg(ctx.scale.events.to_string())
        .output()
        .await
        .map_err(|e| format!("cannot start the no-op drain: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = if output.status.success() {
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str::<Drained>(line)
            .map_err(|e| format!("no-op drain printed `{line}`: {e}").into())
    } else {
        Err(format!(
            "no-op drain failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into())
    };
    db.drop_now().await?;
    result
}

/// The drain itself (inside the `noop-drain` process): fills the queue with `jobs` delivery
/// jobs, then runs them through a no-op handler with the worker's storage settings, and
/// returns when all have run (or after `timeout`).
pub async fn drain(database_url: &str, jobs: u64, timeout: Duration) -> BenchResult<Drained> {
    let url = database_url.to_owned();
    let settings = WorkerSettings::from_lookup(move |name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "WIREHOOK_ENV" => Some("development".to_owned()),
        _ => None,
    })?;
    let conn = db::connect(database_url, settings.concurrency as u32 + 4).await?;
    // Ids of events that do not exist: the no-op handler never loads them.
    let ids: Vec<(EventId, Due)> = (1..=jobs as i64)
        .map(|id| (EventId(id), Due::Now))
        .collect();
    for chunk in ids.chunks(ENQUEUE_BATCH) {
        push_jobs(&conn, chunk).await?;
    }
    let pool = conn.get_postgres_connection_pool().clone();

    let progress = Arc::new(Progress::default());
    let worker_ctx = WorkerContext::new(&format!("noop-drain-{}", std::process::id()));
    let backend = wirehook_core::queue::backend::DeliveryBackend::new(
        &pool,
        wirehook_worker::runtime::storage_config(&settings),
        settings.poll_interval,
    );
    let worker = WorkerBuilder::new(&worker_ctx)
        .backend(backend)
        .data(progress.clone())
        .concurrency(settings.concurrency)
        .build(noop);
    let finished = async {
        let deadline = Instant::now() + timeout;
        while progress.done.load(Ordering::Relaxed) < jobs && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        outcome = worker.run() => {
            if let Err(error) = outcome {
                return Err(format!("the no-op worker failed: {error}").into());
            }
        }
        () = finished => {}
    }
    let done = progress.done.load(Ordering::Relaxed);
    if done < jobs {
        return Err(format!("the no-op worker ran {done} of {jobs} jobs in {timeout:?}").into());
    }
    let (first, last) = *progress.span.lock().unwrap_or_else(PoisonError::into_inner);
    let secs = match (first, last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Drained {
        jobs: done,
        secs,
        rate: if secs > 0.0 { done as f64 / secs } else { 0.0 },
        vm_hwm_kib: crate::procs::vm_hwm_kib(std::process::id()).unwrap_or(0),
        concurrency: settings.concurrency,
    })
}

/// Jobs run so far, and when the first and the last ran.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    span: Mutex<(Option<Instant>, Option<Instant>)>,
}

async fn noop(_job: serde_json::Value, progress: Data<Arc<Progress>>) -> Result<(), BoxDynError> {
    let now = Instant::now();
    {
        let mut span = progress.span.lock().unwrap_or_else(PoisonError::into_inner);
        span.0.get_or_insert(now);
        span.1 = Some(now);
    }
    progress.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
