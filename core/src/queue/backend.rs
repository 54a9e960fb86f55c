//! The apalis backend a replica claims delivery jobs from: apalis-postgres' own queries, driven
//! by apalis-core's [`Persisted`] state machine, as `PostgresStorage` does, with one guarantee
//! `PostgresStorage::with_pubsub()` lacks: **every wake-up is followed by a fetch that starts
//! after it.**
//!
//! apalis fetches when the worker polls its backend while the state machine is `Ready`; a poll
//! that comes while a fetch is in flight only polls that fetch. A wake-up that arrived then (the
//! insert notification of a new job, the poll tick, a finished job whose result waits to be
//! recorded) was spent on it and forgotten, and the fetch in flight began before the new job
//! committed: its snapshot, and the `now()` that apalis compares `run_at < now()` against, are
//! older than the job, so it returned nothing and the worker slept until the next poll interval
//! (or, for a result, left the job `Running` until then). Under CPU load, when a fetch takes tens
//! of milliseconds, a new job then waited the whole interval instead of ~10 ms.
//!
//! Here a wake-up that arrives while the backend cannot act on it is remembered, and when the
//! fetch in flight ends empty the worker is woken again: the next poll, in `Ready`, records the
//! finished jobs' results and starts a fresh fetch. A poll in `Ready` satisfies every wake-up
//! seen before it, so each wake-up costs at most one extra fetch.
//!
//! Wake-ups:
//! - LISTEN `apalis::job::insert` on a connection of its own (apalis' insert trigger notifies
//!   for jobs due when inserted); once LISTEN is in effect, after the first connection and after
//!   every reconnection, one wake-up too, for jobs inserted while nobody listened;
//! - a tick every `WORKER_POLL_INTERVAL_MS`, for scheduled jobs that came due;
//! - a job that finished: its result is in apalis' event channel by then (see [`Finished`]).

use std::collections::HashMap;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{Backend, Layer, Service, Stack, WorkerContext};
use apalis_codec::json::JsonCodec;
use apalis_core::backend::finalize::Durable;
use apalis_core::backend::persistence::{
    Persisted, Persistence, State, TaskEvent, TaskPersistLayer,
};
use apalis_core::backend::{BackendConfig, WireFormatBackend};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::task::status::Status;
use apalis_core::task::task_id::{TaskId, TaskIdError::Decode};
use apalis_postgres::{Config, Error, InsertEvent, PgListener, PgPool, PgTask, queries};
use futures::future::BoxFuture;
use sea_orm::sqlx::{self, Row, postgres::PgRow, postgres::types::PgHstore};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The channel apalis' insert trigger notifies on.
const INSERT_CHANNEL: &str = "apalis::job::insert";

/// Registers a worker as apalis-postgres does (its `register_worker` takes a timestamp type the
/// crate does not export): a live process holding the name's advisory lock keeps it.
const REGISTER_WORKER: &str = "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
     VALUES ($1, $2, $3, $4, now()) \
     ON CONFLICT (id) DO UPDATE SET worker_type = EXCLUDED.worker_type, \
         storage_name = EXCLUDED.storage_name, layers = EXCLUDED.layers, last_seen = now() \
     WHERE pg_try_advisory_lock(hashtext(workers.id))";

/// Claims due jobs: apalis-postgres' `apalis.get_jobs` (its fetch) spelled as a statement.
///
/// The function is `LANGUAGE sql`, which PostgreSQL 15 plans anew on every call: 0.2 ms of
/// planning per fetch, empty ones included, about a tenth of PostgreSQL's CPU at 300 events/s
/// (`bench/PROFILE.md`). As a prepared statement it is planned once per connection; one
/// statement outside a transaction also saves the fetch's `BEGIN` and `COMMIT`. The status
/// tests stay literals: they are the predicate of the partial index the claim reads
/// (`idx_apalis_jobs_fetch_partial`), which a parameter would keep a generic plan off (the
/// worker's connections plan generically, see [`crate::process::connect_worker`]).
pub const FETCH: &str = "WITH due AS ( \
       SELECT id FROM apalis.jobs \
       WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) \
         AND run_at < now() AND job_type = $2 \
       ORDER BY priority DESC, run_at ASC \
       LIMIT $3 \
       FOR UPDATE SKIP LOCKED) \
     UPDATE apalis.jobs AS j SET status = 'Queued', lock_by = $1, lock_at = now() \
     FROM due WHERE j.id = due.id \
     RETURNING j.job, j.id, j.job_type, j.status, j.attempts, j.max_attempts, \
       floor(extract(epoch FROM j.run_at))::bigint AS run_at, \
       floor(extract(epoch FROM j.lock_at))::bigint AS lock_at, \
       floor(extract(epoch FROM j.done_at))::bigint AS done_at, \
       j.lock_by, j.priority, j.idempotency_key, j.metadata";

/// Records finished jobs' results: apalis-postgres' `handle_results`, finding the jobs by id.
///
/// apalis' statement finds them by joining its JSON to the jobs `WHERE lock_by = $2`, and with
/// the JSON's size unknown its plan reads the replica's jobs through `idx_apalis_jobs_lock_by`:
/// every job the replica ever claimed that the cleanup has not deleted yet, finished ones
/// included (hundreds per result, growing with the table; `bench/PROFILE.md`). Here the ids
/// come as an array for the primary key (`$3`), and the replica test is written so that no index
/// can serve it. Rows are still locked in id order first, as there.
pub const HANDLE_RESULTS: &str = "WITH j AS ( \
       SELECT value ->> 'task_id' AS task_id, (value ->> 'attempt')::integer AS attempt, \
         value -> 'result' AS result, value ->> 'status' AS status \
       FROM jsonb_array_elements($1::jsonb) AS value), \
     locked AS ( \
       SELECT id FROM apalis.jobs \
       WHERE id = ANY($3) AND lock_by IS NOT DISTINCT FROM $2 \
       ORDER BY id \
       FOR UPDATE) \
     UPDATE apalis.jobs AS jobs \
     SET status = j.status, attempts = j.attempt, last_result = j.result, done_at = now() \
     FROM j JOIN locked ON locked.id = j.task_id \
     WHERE jobs.id = locked.id";

/// A claimed row as apalis' task, as apalis-postgres builds it from `get_jobs`' rows.
fn task_of(row: &PgRow) -> Result<PgTask, Error> {
    let id: String = row.try_get("id")?;
    let ulid =
        ulid::Ulid::from_string(&id).map_err(|e| Error::TaskIdError(Decode(e.to_string())))?;
    let status: String = row.try_get("status")?;
    let seconds = |column: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(column)?
            .and_then(|s| u64::try_from(s).ok()))
    };
    let metadata: HashMap<String, String> = row
        .try_get::<Option<PgHstore>, _>("metadata")?
        .map(|store| {
            store
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect()
        })
        .unwrap_or_default();
    let mut task = TaskBuilder::new(row.try_get::<Vec<u8>, _>("job")?)
        .task_id(TaskId::from_ulid(ulid))
        .queue(row.try_get::<String, _>("job_type")?.into())
        .status(Status::from_str(&status).map_err(Error::StatusError)?)
        .attempt(usize::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0))
        .max_attempts(
            row.try_get::<Option<i32>, _>("max_attempts")?
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(25),
        )
        .run_at_timestamp(seconds("run_at")?.unwrap_or(0))
        .lock_at(seconds("lock_at")?)
        .done_at(seconds("done_at")?)
        .lock_by(row.try_get("lock_by")?)
        .priority(
            row.try_get::<Option<i32>, _>("priority")?
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or_default(),
        )
        .with_metadata(MetadataStore::from_map(metadata));
    if let Some(key) = row.try_get::<Option<String>, _>("idempotency_key")? {
        task = task.idempotency_key(key);
    }
    Ok(task.build())
}

/// First and longest wait before the listener connects again.
const RELISTEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Delivery jobs in apalis' Postgres storage, for one apalis worker.
pub struct DeliveryBackend {
    persisted: Persisted<PgQueue>,
    codec: JsonCodec<Vec<u8>>,
    /// Wake-ups from the listener and from finished jobs; full means one is already pending.
    wakes: mpsc::Receiver<()>,
    wake: mpsc::Sender<()>,
    tick: tokio::time::Interval,
    /// A wake-up arrived that no fetch started since has answered.
    unanswered: bool,
    listener: JoinHandle<()>,
}

impl DeliveryBackend {
    /// The backend of `config.queue` on `pool`, polling every `poll_interval`. Starts listening
    /// for inserted jobs at once (on a connection of its own), so it must be called inside a
    /// Tokio runtime.
    pub fn new(pool: &PgPool, config: Config, poll_interval: Duration) -> Self {
        let (wake, wakes) = mpsc::channel(1);
        let listener = tokio::spawn(listen(pool.clone(), config.queue.to_string(), wake.clone()));
        let mut tick = tokio::time::interval(poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            persisted: Persisted::new(PgQueue {
                pool: pool.clone(),
                config,
            }),
            codec: JsonCodec::default(),
            wakes,
            wake,
            tick,
            unanswered: false,
            listener,
        }
    }

    /// Takes every wake-up that came since the last poll (and registers for the next ones).
    fn woken(&mut self, cx: &mut Context<'_>) -> bool {
        let mut woken = false;
        while let Poll::Ready(Some(())) = self.wakes.poll_recv(cx) {
            woken = true;
        }
        while self.tick.poll_tick(cx).is_ready() {
            woken = true;
        }
        woken
    }
}

impl Drop for DeliveryBackend {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Backend for DeliveryBackend {
    type Task = PgTask;
    type Error = Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        let heartbeat = self.persisted.config.heartbeat_interval;
        self.persisted.poll_ready(cx, worker, heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        if self.woken(cx) {
            self.unanswered = true;
        }
        if matches!(self.persisted.state(), State::Ready) {
            // `poll_ready` has just recorded the finished jobs' results, and this poll starts a
            // fetch: both after every wake-up taken so far.
            self.unanswered = false;
        }
        let next = self.persisted.poll_next(cx, worker);
        if next.is_pending() && self.unanswered && matches!(self.persisted.state(), State::Ready) {
            // The fetch that was in flight ended empty, and it began before a wake-up: poll
            // again, now in `Ready`.
            cx.waker().wake_by_ref();
        }
        next
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.persisted.poll_close(cx, worker)
    }
}

impl BackendConfig for DeliveryBackend {
    type Args = Value;
    type Id = ulid::Ulid;
    type Kind = Durable;
    type Config = Config;
    /// apalis' lock and result bookkeeping, inside [`Finished`].
    type Layer = Stack<TaskPersistLayer<JsonCodec<Value>, Value>, FinishedLayer>;

    fn config(&self) -> &Self::Config {
        &self.persisted.config
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        let config = self.persisted.config.clone();
        let persist = self
            .persisted
            .layer(JsonCodec::<Value>::default(), config.batch_size)
            .persist_results(config.persist_results)
            .lock_tasks(config.lock_tasks);
        Stack::new(persist, FinishedLayer(self.wake.clone()))
    }
}

impl WireFormatBackend for DeliveryBackend {
    type Codec = JsonCodec<Vec<u8>>;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}

/// Makes [`Finished`] services.
#[derive(Clone)]
pub struct FinishedLayer(mpsc::Sender<()>);

impl<S> Layer<S> for FinishedLayer {
    type Service = Finished<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Finished {
            inner,
            wake: self.0.clone(),
        }
    }
}

/// Wakes the backend when a job is over. It wraps apalis' bookkeeping service, whose future
/// sends the job's result to the backend's event channel before it completes, so the result is
/// there to be recorded when the backend is woken.
#[derive(Clone)]
pub struct Finished<S> {
    inner: S,
    wake: mpsc::Sender<()>,
}

impl<S, Request> Service<Request> for Finished<S>
where
    S: Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let job = self.inner.call(request);
        let wake = self.wake.clone();
        Box::pin(async move {
            let result = job.await;
            // Full means a wake-up is already pending.
            let _ = wake.try_send(());
            result
        })
    }
}

/// Sends a wake-up for every insert notification of `queue`, and one each time LISTEN takes
/// effect (jobs inserted before it notified nobody). Runs until aborted.
async fn listen(pool: PgPool, queue: String, wake: mpsc::Sender<()>) {
    let mut backoff = RELISTEN_BACKOFF.0;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot connect to LISTEN for new jobs");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RELISTEN_BACKOFF.1);
                continue;
            }
        };
        if let Err(error) = listener.listen(INSERT_CHANNEL).await {
            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot LISTEN for new jobs");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RELISTEN_BACKOFF.1);
            continue;
        }
        backoff = RELISTEN_BACKOFF.0;
        let _ = wake.try_send(());
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let ours = serde_json::from_str::<InsertEvent>(notification.payload())
                        .is_ok_and(|inserted| inserted.job_type == queue);
                    if ours {
                        let _ = wake.try_send(());
                    }
                }
                // The connection was lost and is back, listening again: notifications sent
                // meanwhile are lost.
                Ok(None) => {
                    tracing::warn!("the LISTEN connection was lost and is back");
                    let _ = wake.try_send(());
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "the LISTEN connection failed; connecting again");
                    break;
                }
            }
        }
    }
}

/// apalis-postgres' storage operations for one queue (the crate's own `SqlxPersistence` is
/// private), each in a transaction of its own, as there.
#[derive(Debug, Clone)]
struct PgQueue {
    pool: PgPool,
    config: Config,
}

impl PgQueue {
    fn queue(&self) -> &str {
        self.config.queue.as_ref()
    }

    fn orphaned_after_secs(&self) -> u64 {
        self.config.orphaned_duration().as_secs()
    }
}

impl Persistence for PgQueue {
    type Compact = Vec<u8>;
    type Response = Value;
    type Error = Error;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        queries::reenqueue_orphaned(&mut *tx, self.queue(), self.orphaned_after_secs()).await?;
        let registered = sqlx::query(REGISTER_WORKER)
            .bind(worker.name())
            .bind(self.queue())
            .bind("PgStorage")
            .bind(worker.get_service())
            .execute(&mut *tx)
            .await?;
        if registered.rows_affected() == 0 {
            return Err(Error::WorkerAlreadyExists(worker.name().to_owned()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        queries::keep_alive(&mut *tx, self.queue(), worker).await?;
        queries::reenqueue_orphaned(&mut *tx, self.queue(), self.orphaned_after_secs()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<PgTask>, Error> {
        let rows = sqlx::query(FETCH)
            .bind(worker.name())
            .bind(self.queue())
            .bind(i32::try_from(self.config.batch_size).unwrap_or(i32::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_of).collect()
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<PgTask>,
        worker: &WorkerContext,
    ) -> Result<u64, Error> {
        let ids: Vec<String> = tasks
            .iter()
            .filter_map(|task| task.task_id().map(ToString::to_string))
            .collect();
        let mut tx = self.pool.begin().await?;
        let count =
            queries::reenqueue_abandoned(&mut *tx, self.queue(), worker.name(), &ids).await?;
        if count as usize != tasks.len() {
            return Err(Error::ReenqueueMismatch {
                queued: tasks.len(),
                abandoned: count as usize,
            });
        }
        tx.commit().await?;
        Ok(count)
    }

    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Value>>,
        worker: &WorkerContext,
    ) -> Result<(), Error> {
        let results: Vec<&queries::ResultPayload> = events
            .iter()
            .filter_map(|event| match event {
                TaskEvent::Complete(result) => Some(result),
                _ => None,
            })
            .collect();
        let finished: std::collections::HashSet<String> = results
            .iter()
            .map(|result| result.task_id.to_string())
            .collect();
        let locks: Vec<String> = events
            .iter()
            .filter_map(|event| match event {
                TaskEvent::Lock { task_id } => Some(task_id.to_string()),
                _ => None,
            })
            .filter(|id| !finished.contains(id))
            .collect();
        if results.is_empty() && locks.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        if !results.is_empty() {
            let ids: Vec<&str> = finished.iter().map(String::as_str).collect();
            sqlx::query(HANDLE_RESULTS)
                .bind(serde_json::to_value(&results).map_err(Error::JsonError)?)
                .bind(worker.name())
                .bind(ids)
                .execute(&mut *tx)
                .await?;
        }
        if !locks.is_empty() {
            queries::lock_tasks(&mut *tx, &locks, worker.name()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn push_tasks(&mut self, tasks: Vec<PgTask>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        queries::push_tasks(&mut *tx, self.queue(), tasks).await?;
        tx.commit().await?;
        Ok(())
    }
}
