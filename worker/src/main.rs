//! `worker`: run one delivery worker replica until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use secrecy::ExposeSecret;
use wirehook_core::engine::Engine;
use wirehook_core::process;
use wirehook_core::settings::WorkerSettings;
use wirehook_worker::runtime;

/// mimalloc instead of glibc malloc: the request and delivery paths allocate many small
/// short-lived buffers across threads, where glibc's allocator cost about a quarter of the CPU.
/// The `system-alloc` feature keeps glibc's, so that heap profilers which intercept malloc
/// (heaptrack, valgrind) see every allocation.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Most pool connections a replica opens for its deliveries, whatever its concurrency.
const POOL_FOR_DELIVERIES: u32 = 16;

/// wirehook worker: deliver outbound webhooks from the apalis queue. Configured by the
/// environment (DATABASE_URL, WORKER_CONCURRENCY, DELIVERY_TIMEOUT_SECS, METRICS_ADDR, …).
#[derive(Parser)]
#[command(name = "worker", version)]
struct Cli {}

#[tokio::main]
async fn main() -> ExitCode {
    Cli::parse();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("worker: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    process::init_tracing();
    let settings = WorkerSettings::from_env().map_err(|e| e.to_string())?;
    // Loads and records are batched, so deliveries in flight share a few connections; the rest
    // serve apalis (fetch, ack), the lease, LISTEN and failing endpoints' probes.
    let connections = (settings.concurrency as u32).min(POOL_FOR_DELIVERIES) + 4;
    let db = process::connect_worker(settings.database_url.expose_secret(), connections).await?;
    let pending = migration::pending(&db)
        .await
        .map_err(|e| format!("cannot read migrations: {e}"))?;
    if !pending.is_empty() {
        return Err(format!(
            "{} migration(s) pending ({}); run `api migrate` first",
            pending.len(),
            pending.join(", ")
        ));
    }
    // Once it is clear the replica will run, so that a refusal to start stays one line.
    settings.common.log_mode("worker");
    let engine = Arc::new(Engine::from_settings(db, &settings).map_err(|e| e.to_string())?);
    runtime::run(engine, &settings, process::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
