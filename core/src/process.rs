//! Process plumbing shared by the `api` and `worker` binaries: logging, database pool, signals.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` filter (default `info`, without PostgreSQL's
/// notices), `LOG_FORMAT` json|pretty, to stderr. A second call keeps the first subscriber.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    drop(result);
}

/// How long a caller waits for a pooled database connection before giving up.
///
/// While PostgreSQL is down, the pool keeps trying to connect for this long and then fails: the
/// api answers `503 database_unavailable` after at most this wait instead of hanging, and a
/// worker's job fails and is run again later. Larger than any wait for a free connection under
/// load (pools are sized above the work they serve), small enough for clients and load
/// balancers to see an outage quickly.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects a pool of at most `max_connections`; connecting and acquiring a connection each
/// fail after [`ACQUIRE_TIMEOUT`] when the database is down. The pool reconnects by itself once
/// the database returns: a connection found broken is dropped and a new one opened.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, String> {
    Database::connect(options(url, max_connections))
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))
}

/// A pool like [`connect`]'s that connects on first use rather than now, its connections named
/// `application_name` in `pg_stat_activity`: for a server whose absence must not stop the
/// process (the api's read replica). Fails only on a malformed URL.
pub async fn connect_lazy(
    url: &str,
    max_connections: u32,
    application_name: &str,
) -> Result<DatabaseConnection, String> {
    let mut opts = options(url, max_connections);
    let application_name = application_name.to_owned();
    opts.connect_lazy(true)
        .map_sqlx_postgres_opts(move |pg| pg.application_name(&application_name));
    Database::connect(opts)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))
}

fn options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .sqlx_logging(false);
    opts.map_sqlx_postgres_pool_opts(|pool| {
        pool.after_release(|conn, _| {
            Box::pin(async move {
                shrink_after_use(conn);
                Ok(true)
            })
        })
    });
    opts
}

/// Gives back what a connection's buffers grew to for its largest statement or row.
///
/// sqlx keeps a connection's write and read buffers at their largest size so far. A batch's
/// record or group commit sends one statement of up to a few MiB, so without this every pooled
/// connection slowly grows to the largest batch it ever carried, and a process's memory rises
/// for as long as the connections live (the soak run saw a worker gain 20–30 MiB over half an
/// hour, then fall when the pool recycled its connections). Buffers at their default size are
/// left as they are, so a small statement pays nothing.
fn shrink_after_use(conn: &mut sea_orm::sqlx::PgConnection) {
    use sea_orm::sqlx::Connection;
    conn.shrink_buffers();
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// Connects the worker's pool like [`connect`], with three settings on every connection:
///
/// - `synchronous_commit = off`: apalis' fetches, locks and acknowledgements and the engine's
///   records commit without waiting for the WAL flush. Safe under at-least-once: the worker
///   only ever records work it did, and a commit lost in a PostgreSQL crash (the last few
///   hundred milliseconds) means the job runs again. The api keeps synchronous commits, since
///   its answer promises an accepted event is stored.
/// - `random_page_cost = `[`WORKER_RANDOM_PAGE_COST`]: what the worker reads (the jobs table,
///   today's history partitions) is in shared buffers, where an index probe costs about what a
///   sequential read does. At PostgreSQL's default of 4, apalis' acknowledgement (a join of the
///   acknowledged ids, estimated at 100 rows, to `apalis.jobs`) hash-joined a sequential scan
///   of the whole jobs table on every acknowledgement: 13 ms against 0.9 ms by the primary key
///   with a few thousand finished jobs kept (`JOB_HISTORY_SECS`), and the largest share of
///   PostgreSQL's CPU in the soak run.
/// - `plan_cache_mode = force_generic_plan`: each prepared statement is planned once per
///   connection. At PostgreSQL's default, statements on the partitioned history (whose generic
///   plan costs every day's partition) and those taking an id array were planned anew on every
///   call: at 300 events/s the engine's load, lock and record statements and apalis' lock spent
///   more time planning than executing (`bench/PROFILE.md`). Every statement the worker runs
///   spells the predicates of the partial indexes it needs as literals, so generic plans keep
///   them (tested for the claim, [`crate::queue::backend::FETCH`]).
pub async fn connect_worker(url: &str, max_connections: u32) -> Result<DatabaseConnection, String> {
    let mut opts = options(url, max_connections);
    opts.map_sqlx_postgres_opts(|pg| {
        pg.options([
            ("synchronous_commit", "off"),
            ("random_page_cost", WORKER_RANDOM_PAGE_COST),
            ("plan_cache_mode", WORKER_PLAN_CACHE_MODE),
        ])
    });
    Database::connect(opts)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))
}

/// The worker's `random_page_cost` (see [`connect_worker`]); 1.1 is the usual setting for data
/// on SSDs or in memory.
pub const WORKER_RANDOM_PAGE_COST: &str = "1.1";

/// The worker's `plan_cache_mode` (see [`connect_worker`]).
pub const WORKER_PLAN_CACHE_MODE: &str = "force_generic_plan";

/// Whether `error` means no connection could be had or the connection broke, as opposed to a
/// statement the database refused.
pub fn is_connection_error(error: &sea_orm::DbErr) -> bool {
    matches!(
        error,
        sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
    )
}

/// The message a caught panic carried (`panic!` with a literal or a formatted string).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
