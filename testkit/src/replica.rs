//! A worker replica in-process: the worker's own runtime ([`wirehook_worker::runtime::run`])
//! as a task of the test's runtime, against the test's database, with settings a test
//! chooses. It stops when asked ([`Replica::stop`], which reports how `run` ended) or when
//! dropped (the stop signal is sent; nobody waits).
//!
//! The api's tests deliver through it, which is why the api needs no dependency on the
//! worker crate: the testkit has it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use sea_orm::sqlx::{self, PgPool};
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};
use wirehook_core::engine::Engine;
use wirehook_core::http_client::ClientBuildError;
use wirehook_core::settings::{SettingsError, WorkerSettings};
use wirehook_worker::runtime::{self, RuntimeError};

/// How often [`Replica::wait_ready`] looks.
const READY_POLL: Duration = Duration::from_millis(5);

/// Settings of a replica on `database_url` with its metrics on a free port, in development mode
/// (deliveries to the tests' receivers on 127.0.0.1, the development encryption key), then
/// `vars` on top (a later value of a variable wins over an earlier one). Unset variables take
/// the worker's defaults.
pub fn settings(
    database_url: &str,
    vars: &[(&str, &str)],
) -> Result<WorkerSettings, SettingsError> {
    let base = [
        ("DATABASE_URL", database_url),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("WIREHOOK_ENV", "development"),
    ];
    let vars: Vec<(String, String)> = base
        .iter()
        .chain(vars)
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    WorkerSettings::from_lookup(|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

/// Why a replica did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// It did not get there in time.
    #[error("the replica did not {what} within {limit:?}")]
    TimedOut { what: &'static str, limit: Duration },
    /// Looking failed.
    #[error("cannot check the replica: {0}")]
    Db(#[from] sqlx::Error),
}

/// How [`Replica::stop`] found `run`, when not returning `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// `run` had not returned this long after the stop signal.
    #[error("run did not return within {0:?} of the stop signal")]
    TimedOut(Duration),
    /// `run` panicked.
    #[error("run panicked: {0}")]
    Panicked(#[from] JoinError),
    /// `run` returned an error (it could not start).
    #[error("run failed: {0}")]
    Failed(#[from] RuntimeError),
}

/// A replica running in the background of the test's runtime.
pub struct Replica {
    name: String,
    pool: PgPool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RuntimeError>>,
}

impl Replica {
    /// The replica the `worker` binary would run with `settings` on `db`: the engine from the
    /// settings (delivery client, concurrency, auto-disable policy). Returns at once; see
    /// [`wait_ready`](Self::wait_ready).
    pub fn start(
        db: DatabaseConnection,
        settings: WorkerSettings,
    ) -> Result<Self, ClientBuildError> {
        let engine = Engine::from_settings(db, &settings)?;
        Ok(Self::spawn(Arc::new(engine), settings))
    }

    /// Runs `engine` under the runtime with `settings`, for tests that build their engine
    /// themselves. Returns at once.
    pub fn spawn(engine: Arc<Engine>, settings: WorkerSettings) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let name = settings.worker_name.clone();
        let pool = engine.db.get_postgres_connection_pool().clone();
        let task = tokio::spawn(async move {
            runtime::run(engine, &settings, async {
                // Sent or dropped: either way the replica stops.
                let _ = stopped.await;
            })
            .await
        });
        Self {
            name,
            pool,
            stop: Some(stop),
            task,
        }
    }

    /// Its apalis worker id (`WORKER_NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until its apalis worker has registered and its LISTEN connection is open, each
    /// within `limit`. From then on a job inserted is started by its own notification (one
    /// inserted before LISTEN took effect is found by the fetch the replica makes once it has).
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), ReadyError> {
        let pool = &self.pool;
        poll(limit, "register", || async {
            let row = sqlx::query("SELECT 1 FROM apalis.workers WHERE id = $1")
                .bind(&self.name)
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
        .await?;
        poll(limit, "open its LISTEN connection", || async {
            let row = sqlx::query(
                "SELECT 1 FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN %apalis::job::insert%'",
            )
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
        .await
    }

    /// Sends the stop signal and waits up to `limit` for `run` to return; `Ok` with how long
    /// that took when it returned `Ok`.
    pub async fn stop(mut self, limit: Duration) -> Result<Duration, StopError> {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let returned = tokio::time::timeout(limit, &mut self.task)
            .await
            .map_err(|_| StopError::TimedOut(limit))?;
        returned??;
        Ok(started.elapsed())
    }
}

/// Polls `check` every [`READY_POLL`] until it holds, for at most `limit`.
async fn poll<F, Fut>(limit: Duration, what: &'static str, mut check: F) -> Result<(), ReadyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, ReadyError>>,
{
    let deadline = Instant::now() + limit;
    while !check().await? {
        if Instant::now() >= deadline {
            return Err(ReadyError::TimedOut { what, limit });
        }
        tokio::time::sleep(READY_POLL).await;
    }
    Ok(())
}
