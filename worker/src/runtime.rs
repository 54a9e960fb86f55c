//! The worker replica: claims delivery jobs from apalis's Postgres storage, runs them through
//! the [`Engine`], keeps its lease alive, serves `/healthz` and `/metrics`, and shuts down
//! gracefully.
//!
//! How jobs reach a replica ([`DeliveryBackend`]):
//! - a new job wakes every replica at once through LISTEN/NOTIFY (apalis' insert trigger);
//! - a job scheduled in the future is found by a poll every `WORKER_POLL_INTERVAL_MS`;
//! - every wake-up is followed by a fetch that starts after it, even one that came while a
//!   fetch was in flight;
//! - at most `WORKER_CONCURRENCY` jobs run at once, claimed in batches of that size.
//!
//! Leases: a replica renews its apalis worker row every `WORKER_HEARTBEAT_SECS` and, on the same
//! beat, re-enqueues jobs held by replicas whose row is older than [`MISSED_HEARTBEATS`]
//! heartbeats. The renewal runs on its own connection and task, because apalis' built-in
//! heartbeat stops while a replica is busy draining a claimed batch or finishing in-flight jobs
//! at shutdown, and a live replica must not lose its jobs to another one.
//!
//! Failures: when the apalis worker stops on a database error, its in-flight jobs are allowed to
//! finish, whatever it still holds is released, and a new worker (a new apalis worker id,
//! `<name>~<n>`) starts after a backoff; the replica itself keeps running.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::{
    AbortError, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt, WorkerContext,
};
use apalis_postgres::{Config, PgConnection, PgPool};
use futures::{FutureExt, StreamExt};
use metrics_exporter_prometheus::PrometheusHandle;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data as PoemData;
use poem::{Endpoint, EndpointExt, Response, Route, Server, get, handler};
use sea_orm::sqlx::{self, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use wirehook_core::engine::Engine;
use wirehook_core::job::{DeliveryJob, QUEUE};
use wirehook_core::queue::{self, backend::DeliveryBackend};
use wirehook_core::settings::WorkerSettings;

/// Heartbeats a replica may miss before its jobs are handed to another replica.
///
/// The lease is `WORKER_HEARTBEAT_SECS × MISSED_HEARTBEATS` (10 s by default); live replicas
/// check for expired leases on every heartbeat, so a dead replica's jobs run again 5–15 s after
/// it died with the default 5 s heartbeat.
pub const MISSED_HEARTBEATS: usize = 2;

/// Gauge: delivery jobs running in this replica now.
pub const IN_FLIGHT: &str = "wirehook_worker_in_flight";

/// Counter: delivery jobs finished by this replica, labelled `outcome` =
/// `ok` | `error` | `panic` | `unreadable`.
pub const JOBS_TOTAL: &str = "wirehook_worker_jobs_total";

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `METRICS_ADDR` could not be bound.
    #[error("cannot listen on METRICS_ADDR {addr}: {source}")]
    MetricsListen {
        /// The address from the settings.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Jobs left locked by an earlier process with the same worker name could not be released.
    #[error("cannot release jobs left by an earlier run of worker {worker}: {source}")]
    Reclaim {
        /// The worker name.
        worker: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
}

/// The apalis storage settings for delivery jobs: the explicit queue, a batch the size of the
/// concurrency, the heartbeat, the lease, and per-job locks and results (a job is only marked
/// `Done` when results are persisted).
pub fn storage_config(settings: &WorkerSettings) -> Config {
    Config::default()
        .queue(QUEUE)
        .batch_size(settings.concurrency)
        .heartbeat_interval(settings.heartbeat_interval)
        .missed_heartbeats(MISSED_HEARTBEATS)
        .lock_tasks(true)
        .persist_results(true)
}

/// How long a replica's jobs stay its own without a heartbeat.
pub fn lease(settings: &WorkerSettings) -> Duration {
    storage_config(settings).orphaned_duration()
}

/// Runs a worker replica until `shutdown` completes.
///
/// Then it stops claiming jobs, lets in-flight jobs finish for up to `WORKER_SHUTDOWN_GRACE_SECS`
/// (releasing any still running after that, so another replica picks them up at once), and
/// returns `Ok`. Errors only when it cannot start.
pub async fn run(
    engine: Arc<Engine>,
    settings: &WorkerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = AbortOnDrop(tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    }));
    let mut stop = StopSignal(stop_rx);

    let pool = engine.db.get_postgres_connection_pool().clone();
    let metrics = wirehook_core::metrics::handle();
    metrics::gauge!(IN_FLIGHT).increment(0.0);

    let acceptor = TcpListener::bind(settings.metrics_addr)
        .into_acceptor()
        .await
        .map_err(|source| RuntimeError::MetricsListen {
            addr: settings.metrics_addr,
            source,
        })?;
    let metrics_addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied());
    let server = {
        let mut stop = stop.clone();
        let app = health_and_metrics(metrics);
        AbortOnDrop(tokio::spawn(async move {
            let result = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, stop.wait(), Some(Duration::from_secs(2)))
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "metrics server stopped");
            }
        }))
    };

    let base = settings.worker_name.clone();
    let released = queue::replicas::release_jobs(&pool, &base, true)
        .await
        .map_err(|source| RuntimeError::Reclaim {
            worker: base.clone(),
            source,
        })?;
    if released > 0 {
        tracing::warn!(
            worker = %base,
            released,
            "released jobs left locked by an earlier process with this worker name"
        );
    }

    tracing::info!(
        worker = %base,
        queue = QUEUE,
        concurrency = settings.concurrency,
        poll_interval_ms = settings.poll_interval.as_millis() as u64,
        heartbeat_secs = settings.heartbeat_interval.as_secs(),
        lease_secs = lease(settings).as_secs(),
        metrics_addr = ?metrics_addr,
        "worker started"
    );

    let maintenance = AbortOnDrop(tokio::spawn(crate::maintenance::run(
        pool.clone(),
        engine.db.clone(),
        crate::maintenance::Schedule {
            sample_every: settings.queue_sample_interval,
            retention: settings.retention,
            purge_every: settings.retention_interval,
            job_history: settings.job_history,
        },
    )));

    let mut generation = 0u32;
    let mut backoff = Duration::from_secs(1);
    loop {
        let name = if generation == 0 {
            base.clone()
        } else {
            format!("{base}~{generation}")
        };
        let started = Instant::now();
        match run_generation(
            name.clone(),
            engine.clone(),
            settings.clone(),
            pool.clone(),
            stop.clone(),
        )
        .await
        {
            Ended::Stopped => break,
            Ended::Failed(error) => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::error!(
                    worker = %name,
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "apalis worker failed; starting a new one"
                );
                tokio::select! {
                    biased;
                    () = stop.wait() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                generation += 1;
            }
        }
    }

    drop(maintenance);
    drop(signal);
    drop(server);
    tracing::info!(worker = %base, "worker stopped");
    Ok(())
}

/// `/healthz` (200 `ok`) and `/metrics` (Prometheus text from `handle`).
pub fn health_and_metrics(handle: PrometheusHandle) -> impl Endpoint + 'static {
    Route::new()
        .at("/healthz", get(healthz))
        .at("/metrics", get(render_metrics))
        .data(handle)
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
fn render_metrics(handle: PoemData<&PrometheusHandle>) -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// The apalis handler: one delivery job through the engine.
///
/// The payload arrives as JSON and is read here rather than by apalis: apalis treats a payload
/// it cannot decode as a failure of the whole worker, and the job would come back after every
/// lease to stop the next one. Here an unreadable job ends `Killed`.
/// An engine `Err` (database) fails the job, and apalis runs it again while attempts remain.
/// A panic is caught and ends the job `Killed` (never retried), like apalis' `catch_panic`
/// layer, whose type keeps the worker future from being provably `Send`.
async fn deliver(payload: serde_json::Value, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    run_one(payload, &ctx.engine).await
}

async fn run_one(payload: serde_json::Value, engine: &Engine) -> Result<(), BoxDynError> {
    let job = match DeliveryJob::from_payload(payload) {
        Ok(job) => job,
        Err(error) => {
            metrics::counter!(JOBS_TOTAL, "outcome" => "unreadable").increment(1);
            tracing::error!(%error, "unreadable delivery job; not retried");
            return Err(Box::new(AbortError::new(format!(
                "unreadable delivery job: {error}"
            ))));
        }
    };
    let events = job.event_ids();
    let in_flight = InFlight::enter();
    let result = AssertUnwindSafe(engine.run_job(&job)).catch_unwind().await;
    drop(in_flight);
    match result {
        Ok(Ok(())) => {
            metrics::counter!(JOBS_TOTAL, "outcome" => "ok").increment(1);
            Ok(())
        }
        Ok(Err(error)) => {
            metrics::counter!(JOBS_TOTAL, "outcome" => "error").increment(1);
            tracing::error!(?events, %error, "delivery job failed; apalis retries it");
            Err(error.into())
        }
        Err(panic) => {
            metrics::counter!(JOBS_TOTAL, "outcome" => "panic").increment(1);
            let message = wirehook_core::process::panic_message(panic.as_ref());
            tracing::error!(?events, %message, "delivery job panicked; not retried");
            Err(Box::new(AbortError::new(format!("panicked: {message}"))))
        }
    }
}

/// What the handler gets besides the job.
#[derive(Clone)]
struct JobContext {
    engine: Arc<Engine>,
}

/// Counts a job in [`IN_FLIGHT`] for as long as it lives, including when it is cancelled.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}

enum Ended {
    /// The shutdown signal came and the worker drained (or gave up at the grace period).
    Stopped,
    /// The apalis worker stopped on an error; a new one should start.
    Failed(String),
}

/// Runs one apalis worker named `name` until shutdown or its first backend error.
///
/// Boxed as a `Send` future: apalis' service stack is `Send`, but only provably so where its
/// types are concrete, and `run` must stay spawnable.
fn run_generation(
    name: String,
    engine: Arc<Engine>,
    settings: WorkerSettings,
    pool: PgPool,
    mut stop: StopSignal,
) -> futures::future::BoxFuture<'static, Ended> {
    Box::pin(async move {
        let name = name.as_str();
        let settings = &settings;
        let pool = &pool;
        let engine = &engine;
        let stop = &mut stop;
        let ctx = WorkerContext::new(name);
        let backend = DeliveryBackend::new(pool, storage_config(settings), settings.poll_interval);
        let worker = WorkerBuilder::new(&ctx)
            .backend(backend)
            .data(JobContext {
                engine: engine.clone(),
            })
            .concurrency(settings.concurrency)
            .build(deliver);

        let _lease = AbortOnDrop(tokio::spawn(keep_lease(
            pool.clone(),
            name.to_owned(),
            settings.heartbeat_interval,
            lease(settings),
        )));

        let mut events = Box::pin(worker.stream());
        let failure = loop {
            tokio::select! {
                biased;
                () = stop.wait() => break None,
                event = events.next() => match event {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break Some("the apalis worker ended by itself".to_owned()),
                },
            }
        };

        if ctx.stop().is_err() {
            // Never started: it holds nothing.
            return failure.map_or(Ended::Stopped, Ended::Failed);
        }
        let in_flight = ctx.task_count();
        if failure.is_none() {
            tracing::info!(worker = %name, in_flight, "stopping: no new jobs, finishing in-flight ones");
        }
        let drain = async {
            while let Some(event) = events.next().await {
                // After an error while closing, apalis' state machine must not be polled again.
                event?;
            }
            Ok::<(), apalis::prelude::WorkerError>(())
        };
        let abandoned = match tokio::time::timeout(settings.shutdown_grace, drain).await {
            Ok(Ok(())) => false,
            Ok(Err(error)) => {
                tracing::warn!(worker = %name, %error, "apalis worker failed while stopping");
                true
            }
            Err(_) => {
                tracing::warn!(
                    worker = %name,
                    in_flight = ctx.task_count(),
                    grace_secs = settings.shutdown_grace.as_secs(),
                    "grace period over; abandoning the jobs still running"
                );
                true
            }
        };
        if abandoned {
            // Dropping the stream cancels what still runs; hand it to other replicas now rather
            // than after the lease.
            drop(events);
            match tokio::time::timeout(
                Duration::from_secs(5),
                queue::replicas::release_jobs(pool, name, false),
            )
            .await
            {
                Ok(Ok(n)) if n > 0 => tracing::warn!(worker = %name, released = n, "released jobs"),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(
                    worker = %name,
                    %error,
                    "cannot release jobs; they return after the lease expires"
                ),
                Err(_) => tracing::warn!(
                    worker = %name,
                    "releasing jobs timed out; they return after the lease expires"
                ),
            }
        }
        failure.map_or(Ended::Stopped, Ended::Failed)
    })
}

/// Renews `worker`'s lease every `every` on a connection of its own, and re-enqueues jobs of
/// replicas whose lease (`lease`) has expired. Runs until aborted.
async fn keep_lease(pool: PgPool, worker: String, every: Duration, lease: Duration) {
    let mut conn: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let beat = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(PgConnection::connect_with(&pool.connect_options()).await?),
            };
            queue::replicas::renew_lease(c, &worker, lease).await
        };
        let outcome = tokio::time::timeout(every.max(Duration::from_secs(1)), beat).await;
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        tracing::warn!(%worker, %error, "lease renewal failed; reconnecting");
        conn = None;
    }
}

/// The shutdown signal, shared by the runtime's parts.
#[derive(Clone)]
struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Completes once shutdown was requested (or its sender is gone).
    async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// Aborts a spawned task when dropped, so no task outlives the runtime.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
