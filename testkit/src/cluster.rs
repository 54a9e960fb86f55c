//! A throwaway PostgreSQL cluster that can be stopped, crashed and started again without
//! disturbing any other server: `scripts/pg-local.sh` with a folder of its own
//! (`WIREHOOK_PG_DIR`) and a port of its own in 55400–55499, on 127.0.0.1 only.
//!
//! Starting, stopping and crashing run the script on a blocking thread
//! (`tokio::task::spawn_blocking`), so the replicas, receivers and apps of the same test keep
//! running meanwhile: every caller is async. Dropping the cluster stops it synchronously.

use std::path::{Path, PathBuf};
use std::process::Command;
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
        tokio::task::spawn_blocking(move || Self::start_blocking(durability)).await?
    }

    fn start_blocking(durability: Durability) -> Result<Self, ClusterError> {
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
            match run_script(&dir, port, durability, "ensure") {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        port,
                        durability,
                    });
                }
                // Another server took the port between the check and the start.
                Err(ClusterError::Script { stderr, .. }) if stderr.contains("already listens") => {}
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

/// Runs `scripts/pg-local.sh <command>` for the cluster in `dir` on `port`.
fn run_script(
    dir: &Path,
    port: u16,
    durability: Durability,
    command: &str,
) -> Result<(), ClusterError> {
    let script = script();
    let durable = match durability {
        Durability::Fast => "0",
        Durability::Durable => "1",
        Durability::Production => "full",
    };
    let output = Command::new(&script)
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
