//! A throwaway PostgreSQL cluster that can be stopped, crashed and started again without
//! disturbing any other server: `scripts/pg-local.sh` with a folder of its own
//! (`WIREHOOK_PG_DIR`) and a port of its own in 55400–55499, on 127.0.0.1 only.
//!
//! A cluster can have hot standbys ([`Cluster::start_standby`]): clusters of their own made by
//! `pg_basebackup -R` from it, which replay its WAL as streaming replicas do in production.
//!
//! Starting, stopping and crashing run the script on a blocking thread
//! (`tokio::task::spawn_blocking`), so the replicas, receivers and apps of the same test keep
//! running meanwhile: every caller is async. Dropping the cluster stops it synchronously.

use std::path::{Path, PathBuf};
use std::process::Command;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};
use std::sync::atomic::{AtomicU32, Ordering};

/// First and last port a cluster may take.
pub const PORTS: (u16, u16) = (55400, 55499);

/// Why a cluster could not be created, stopped or started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The folder for the cluster could not be made.
    #[error("cannot create {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `scripts/pg-local.sh` could not be run.
    #[error("cannot run {script}: {source}")]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The script ran and failed; `stderr` says why.
    #[error("scripts/pg-local.sh {command} failed: {stderr}")]
    Script { command: String, stderr: String },
    /// Every port in [`PORTS`] was taken.
    #[error("no free port in {}–{}", PORTS.0, PORTS.1)]
    NoPort,
    /// The blocking thread running the script panicked or was cancelled.
    #[error("the thread running scripts/pg-local.sh failed: {0}")]
    Thread(#[from] tokio::task::JoinError),
}

/// Whether committed transactions survive a crash of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` and `synchronous_commit` off: fast, and a crash may lose the last commits.
    Fast,
    /// `synchronous_commit` on: a crash of the server ([`Cluster::crash`]) loses nothing
    /// committed (`fsync` stays off, which only matters if the machine itself goes down).
    Durable,
    /// PostgreSQL's defaults, as in production: `fsync`, `full_page_writes` and
    /// `synchronous_commit` on (the soak run measures what storage costs for real).
    Production,
}

/// A running (or stopped) cluster; dropping it stops the server and deletes its folder.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    durability: Durability,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Creates and starts a new cluster with `durability`, on the first free port of
    /// [`PORTS`] from a starting point that differs per process, so parallel runs rarely meet.
    pub async fn start(durability: Durability) -> Result<Self, ClusterError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(durability, None)).await?
    }

    /// Creates and starts a hot standby of this cluster: a base backup of it
    /// (`pg_basebackup -R -X stream`) started as a cluster of its own, on its own port, that
    /// streams and replays this one's WAL. It accepts read-only queries once consistent.
    pub async fn start_standby(&self) -> Result<Self, ClusterError> {
        let (durability, primary) = (self.durability, self.port);
        tokio::task::spawn_blocking(move || Self::start_blocking(durability, Some(primary))).await?
    }

    /// Creates the cluster (a standby of the cluster on port `primary`, when given) on a free
    /// port and starts it.
    fn start_blocking(durability: Durability, primary: Option<u16>) -> Result<Self, ClusterError> {
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "wirehook-cluster-{}-{n}-{}",
            std::process::id(),
            ulid::Ulid::generate().to_string().to_lowercase()
        ));
        make_folder(&dir)?;
        let span = u32::from(PORTS.1 - PORTS.0) + 1;
        let offset = (std::process::id().wrapping_mul(7) + n * 13) % span;
        for i in 0..span {
            let port = PORTS.0 + u16::try_from((offset + i) % span).unwrap_or(0);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let started = match primary {
                None => run_script(&dir, port, durability, "ensure"),
                Some(primary) => standby_script(&dir, port, durability, primary),
            };
            match started {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        port,
                        durability,
                    });
                }
                // Another server took the port between the check and the start (seen by the
                // script's own check, or by the server failing to bind it); the next port
                // starts the same folder.
                Err(ClusterError::Script { stderr, .. })
                    if stderr.contains("already listens")
                        || stderr.contains("Address already in use") => {}
                Err(error) => {
                    let _ = run_script(&dir, port, durability, "stop");
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(error);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(ClusterError::NoPort)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of database `name` on this cluster.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server cleanly (`pg_ctl -m fast`: clients are disconnected).
    pub async fn stop(&self) -> Result<(), ClusterError> {
        self.run_blocking("stop").await
    }

    /// Stops the server at once, as a crash would (`pg_ctl -m immediate`).
    pub async fn crash(&self) -> Result<(), ClusterError> {
        self.run_blocking("crash").await
    }

    /// Starts the server again on the same port and waits until it accepts connections.
    pub async fn resume(&self) -> Result<(), ClusterError> {
        self.run_blocking("ensure").await
    }

    /// The pid of the server's postmaster (whose children are its backends and background
    /// processes), from `postmaster.pid`; `None` while it is stopped.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    async fn run_blocking(&self, command: &'static str) -> Result<(), ClusterError> {
        let (dir, port, durability) = (self.dir.clone(), self.port, self.durability);
        tokio::task::spawn_blocking(move || run_script(&dir, port, durability, command)).await?
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run_script(&self.dir, self.port, self.durability, "stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `standby` has replayed everything `primary` had written when called (its
/// current WAL insert position), so that what the caller committed before is visible there.
/// Waits as long as that takes, up to [`REPLAY_WAIT`]; a standby that never gets there is an
/// error, not a slow test.
pub async fn wait_for_replay(primary: &Cluster, standby: &Cluster) -> Result<(), ReplayError> {
    let primary = connect(&primary.url(), 1).await?;
    let row = primary
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_current_wal_insert_lsn()::text AS lsn",
        ))
        .await?
        .ok_or(ReplayError::NoRow)?;
    let lsn: String = row.try_get("", "lsn")?;
    primary.close().await.ok();
    let standby = connect(&standby.url(), 1).await?;
    let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
    loop {
        let row = standby
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false) AS done",
                [lsn.clone().into()],
            ))
            .await?
            .ok_or(ReplayError::NoRow)?;
        if row.try_get::<bool>("", "done")? {
            standby.close().await.ok();
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ReplayError::Behind(lsn));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The longest [`wait_for_replay`] waits.
pub const REPLAY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why [`wait_for_replay`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("a WAL position query returned no row")]
    NoRow,
    /// The standby did not replay up to this position within [`REPLAY_WAIT`].
    #[error("the standby did not replay up to {0} within {REPLAY_WAIT:?}")]
    Behind(String),
}

async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections).sqlx_logging(false);
    Database::connect(opts).await
}

/// Runs `scripts/pg-local.sh <command>` for the cluster in `dir` on `port`.
fn run_script(
    dir: &Path,
    port: u16,
    durability: Durability,
    command: &str,
) -> Result<(), ClusterError> {
    script_command(dir, port, durability, command, |c| c)
}

/// Runs `scripts/pg-local.sh standby`: a base backup of the cluster on `primary` into `dir`,
/// started on `port`.
fn standby_script(
    dir: &Path,
    port: u16,
    durability: Durability,
    primary: u16,
) -> Result<(), ClusterError> {
    script_command(dir, port, durability, "standby", |c| {
        c.env("WIREHOOK_PG_PRIMARY_PORT", primary.to_string())
    })
}

fn script_command(
    dir: &Path,
    port: u16,
    durability: Durability,
    command: &str,
    extra: impl FnOnce(&mut Command) -> &mut Command,
) -> Result<(), ClusterError> {
    let script = script();
    let durable = match durability {
        Durability::Fast => "0",
        Durability::Durable => "1",
        Durability::Production => "full",
    };
    let mut cmd = Command::new(&script);
    extra(&mut cmd);
    let output = cmd
        .arg(command)
        .env_remove("DATABASE_URL")
        .env("WIREHOOK_PG_DIR", dir)
        .env("WIREHOOK_PG_PORT", port.to_string())
        .env("WIREHOOK_PG_DURABLE", durable)
        .output()
        .map_err(|source| ClusterError::Spawn {
            script: script.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Script {
            command: command.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `scripts/pg-local.sh` of this checkout.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-local.sh")
}

/// Creates `dir` readable and traversable by everyone: the server runs as the `postgres` user
/// when the caller is root.
fn make_folder(dir: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|source| ClusterError::Folder {
            path: dir.to_owned(),
            source,
        })
}
