//! What wirehook's test suites and its harness share, in one place instead of a copy per
//! suite:
//!
//! - [`db`]: a throwaway database per test or run, created beside the admin database of a
//!   server, dropped `WITH (FORCE)` afterwards;
//! - [`cluster`]: a throwaway PostgreSQL cluster of its own, to stop, crash and start again;
//! - [`legacy`]: a database with the history as it was before partitioning, filled, and the
//!   fingerprint that shows a migration in place kept every row;
//! - [`receiver`]: the HTTP receiver deliveries go to, answering from a script (statuses,
//!   `Retry-After`, redirects, hangs, dropped and reset connections) and recording what it got;
//! - [`replica`]: a worker replica in-process, against a test's database, with settings the
//!   test chooses.
//!
//! **Who uses it.** The api's and the worker's integration tests, as a dev-dependency. The
//! harness (`bench`, `chaos`) as a normal dependency: it is a program, not a test, but its
//! runs need the same throwaway databases, clusters and receivers, and one copy of each serves
//! both (the harness keeps what only it needs: the binaries as child processes, load, the
//! benchmark and the chaos run). The core's tests do not use it: their HTTP receivers are
//! hand-written in `core/src/attempt.rs` on purpose. They are unit tests of the one module
//! that reads customers' answers and they write exact bytes a well-behaved server never
//! sends — a status line cut off by a reset, a reason phrase of their choosing, a 100 KiB or
//! invalid UTF-8 body, `Retry-After` forms — and read the raw request line; as unit tests
//! inside the core, which this crate depends on, they could only link a second copy of it.
//!
//! Every call that does I/O returns a `Result`: tests `expect` it, the harness reports it.
//! Logs appear only when `TEST_LOG` is set ([`init_logs`]).

pub mod cluster;
pub mod db;
pub mod legacy;
pub mod receiver;
pub mod replica;

/// Installs a log subscriber writing through the test harness's capture, when `TEST_LOG` is
/// set (filter: `RUST_LOG`, default `info` without PostgreSQL's notices); otherwise tests stay
/// quiet. A second call keeps the first subscriber.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
