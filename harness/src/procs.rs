//! The real `api` and `worker` binaries as child processes: start with an environment, wait
//! until ready, stop gracefully (SIGTERM), kill (SIGKILL), restart, and read peak memory.
//!
//! Children get exactly the environment they are given (plus `PATH`), write stdout and stderr
//! to a log file, and are killed when their [`Proc`] is dropped, so a failing harness leaves no
//! replicas behind.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long a child may take to answer its readiness check, unless its spec says otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of a child's log quoted in errors.
const LOG_TAIL_LINES: usize = 20;

/// One of the wirehook binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `api`: the HTTP api (and `api migrate`, `api token`).
    Api,
    /// `worker`: one delivery worker replica.
    Worker,
}

impl Binary {
    /// The executable's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker => "worker",
        }
    }
}

/// Why a child process could not be run as asked.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The binary is not where [`Binaries`] looks.
    #[error(
        "{0} not found; build it first (cargo build --release -p wirehook-api -p wirehook-worker)"
    )]
    NotFound(PathBuf),
    /// Spawning (or opening its log file) failed.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// The command.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The child did not become ready in time.
    #[error("{what} not ready after {waited:?}; last log lines:\n{log_tail}")]
    NotReady {
        /// The command.
        what: String,
        /// How long it was given.
        waited: Duration,
        /// The end of its log.
        log_tail: String,
    },
    /// The child exited while it was expected to run.
    #[error("{what} exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// The command.
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// A run-to-completion command failed.
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// Signalling or waiting for a child failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// An environment for a child, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// This environment with `name` set to `value` (replacing an earlier value).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// This environment with every variable of `other` set on top.
    pub fn merged(mut self, other: &Env) -> Self {
        for (name, value) in &other.0 {
            self.set(name, value);
        }
        self
    }

    /// The variables, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Where the binaries are (`target/release` by default).
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Path of `binary`.
    pub fn path(&self, binary: Binary) -> PathBuf {
        self.dir.join(binary.file_name())
    }

    /// Fails unless both binaries exist.
    pub fn check(&self) -> Result<(), ProcError> {
        for binary in [Binary::Api, Binary::Worker] {
            let path = self.path(binary);
            if !path.is_file() {
                return Err(ProcError::NotFound(path));
            }
        }
        Ok(())
    }

    /// Runs `binary args` to completion with `env` and returns its stdout (trimmed); a
    /// non-zero exit is an error carrying stderr. For `api migrate`, `api token`.
    pub async fn output(
        &self,
        binary: Binary,
        args: &[&str],
        env: &Env,
    ) -> Result<String, ProcError> {
        let what = format!("{} {}", binary.file_name(), args.join(" "));
        let path = self.path(binary);
        if !path.is_file() {
            return Err(ProcError::NotFound(path));
        }
        let output = command(&path, args, env)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| ProcError::Spawn {
                what: what.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(ProcError::Failed {
                what,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Applies every migration to the database at `database_url` with the real
    /// `api migrate`, as an operator would.
    pub async fn migrate(&self, database_url: &str) -> Result<(), ProcError> {
        let env = Env::new()
            .with("DATABASE_URL", database_url)
            .with("RUST_LOG", "warn");
        self.output(Binary::Api, &["migrate"], &env).await?;
        Ok(())
    }
}

/// What to run, where it logs and how to tell it is ready.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    /// The binary.
    pub binary: Binary,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment (`PATH` is added).
    pub env: Env,
    /// Answers 200 once the process is ready.
    pub ready_url: String,
    /// stdout and stderr go here (appended, across restarts).
    pub log_path: PathBuf,
    /// How long readiness may take.
    pub ready_timeout: Duration,
}

impl ProcSpec {
    /// `api serve` on `addr` against `database_url` in development mode (the harness delivers to
    /// its receivers on 127.0.0.1), with `env` on top; ready when `GET /readyz` answers 200.
    /// Logs to `<log_dir>/<name>.log`.
    pub fn api(
        name: &str,
        database_url: &str,
        addr: SocketAddr,
        env: &Env,
        log_dir: &Path,
    ) -> Self {
        let env = Env::new()
            .with("DATABASE_URL", database_url)
            .with("API_ADDR", addr.to_string())
            .with("WIREHOOK_ENV", "development")
            .merged(env);
        Self {
            binary: Binary::Api,
            args: vec!["serve".into()],
            env,
            ready_url: format!("http://{addr}/readyz"),
            log_path: log_dir.join(format!("{name}.log")),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// A `worker` replica in development mode against `database_url` whose health endpoint
    /// listens on `metrics_addr`, with `env` on top; ready when `GET /healthz` answers 200. Logs
    /// to `<log_dir>/<name>.log`.
    pub fn worker(
        name: &str,
        database_url: &str,
        metrics_addr: SocketAddr,
        env: &Env,
        log_dir: &Path,
    ) -> Self {
        let env = Env::new()
            .with("DATABASE_URL", database_url)
            .with("METRICS_ADDR", metrics_addr.to_string())
            .with("WIREHOOK_ENV", "development")
            .merged(env);
        Self {
            binary: Binary::Worker,
            args: Vec::new(),
            env,
            ready_url: format!("http://{metrics_addr}/healthz"),
            log_path: log_dir.join(format!("{name}.log")),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.binary.file_name(), self.log_path.display())
    }
}

/// A free TCP address on 127.0.0.1 (bound and released, so it is free unless someone takes
/// it in between).
pub fn free_local_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Peak resident memory (`VmHWM`) of process `pid`, in KiB; `None` once it is gone.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// Resident memory now (`VmRSS`) of process `pid`, in KiB; `None` once it is gone.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A running (or stopped) child; killed when dropped.
pub struct Proc {
    spec: ProcSpec,
    path: PathBuf,
    child: Option<Child>,
    peak_kib: Option<u64>,
    starts: u32,
    http: reqwest::Client,
}

impl Proc {
    /// Starts `spec` and waits until it is ready.
    pub async fn start(binaries: &Binaries, spec: ProcSpec) -> Result<Self, ProcError> {
        let path = binaries.path(spec.binary);
        if !path.is_file() {
            return Err(ProcError::NotFound(path));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| ProcError::Spawn {
                what: "readiness client".into(),
                source: std::io::Error::other(e),
            })?;
        let mut proc = Self {
            spec,
            path,
            child: None,
            peak_kib: None,
            starts: 0,
            http,
        };
        proc.spawn()?;
        proc.wait_ready().await?;
        Ok(proc)
    }

    /// What this process runs.
    pub fn spec(&self) -> &ProcSpec {
        &self.spec
    }

    /// The pid of the running child, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Peak resident memory in KiB over every start so far (refreshed from `/proc` now).
    pub fn peak_rss_kib(&mut self) -> Option<u64> {
        if let Some(now) = self.pid().and_then(vm_hwm_kib) {
            self.peak_kib = Some(self.peak_kib.map_or(now, |p| p.max(now)));
        }
        self.peak_kib
    }

    /// Waits until the readiness URL answers 200; fails if the child exits or time runs out.
    pub async fn wait_ready(&mut self) -> Result<(), ProcError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exited()? {
                return Err(ProcError::Exited {
                    what: self.spec.describe(),
                    status,
                    log_tail: log_tail(&self.spec.log_path),
                });
            }
            let answer = self.http.get(&self.spec.ready_url).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > self.spec.ready_timeout {
                return Err(ProcError::NotReady {
                    what: self.spec.describe(),
                    waited: self.spec.ready_timeout,
                    log_tail: log_tail(&self.spec.log_path),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status if the child has exited (or none runs), without waiting.
    pub fn try_exited(&mut self) -> Result<Option<ExitStatus>, ProcError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        child.try_wait().map_err(|source| ProcError::Io {
            what: format!("waiting for {}", self.spec.describe()),
            source,
        })
    }

    /// Sends SIGKILL and reaps the child; `None` if none was running.
    pub async fn kill(&mut self) -> Result<Option<ExitStatus>, ProcError> {
        self.peak_rss_kib();
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let what = format!("killing {}", self.spec.describe());
        // Fails only when the child already exited; `wait` reaps it either way.
        let _ = child.start_kill();
        let status = child
            .wait()
            .await
            .map_err(|source| ProcError::Io { what, source })?;
        Ok(Some(status))
    }

    /// Sends SIGTERM and waits up to `grace` for the child to exit, then kills it; `None` if
    /// none was running.
    pub async fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>, ProcError> {
        self.peak_rss_kib();
        let Some(pid) = self.pid() else {
            return self.kill().await;
        };
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return self.kill().await;
        };
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so it is not reused).
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        if sent != 0 {
            return self.kill().await;
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => {
                self.child = None;
                Ok(Some(status))
            }
            Ok(Err(source)) => Err(ProcError::Io {
                what: format!("waiting for {}", self.spec.describe()),
                source,
            }),
            Err(_) => self.kill().await,
        }
    }

    /// Kills the child if it runs, starts it again and waits until it is ready.
    pub async fn restart(&mut self) -> Result<(), ProcError> {
        self.kill().await?;
        self.spawn()?;
        self.wait_ready().await
    }

    fn spawn(&mut self) -> Result<(), ProcError> {
        let what = self.spec.describe();
        let spawn_err = |source| ProcError::Spawn {
            what: what.clone(),
            source,
        };
        let log = open_log(&self.spec.log_path).map_err(spawn_err)?;
        let log_err = log.try_clone().map_err(spawn_err)?;
        let args: Vec<&str> = self.spec.args.iter().map(String::as_str).collect();
        let child = command(&self.path, &args, &self.spec.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }
}

fn command(path: &Path, args: &[&str], env: &Env) -> Command {
    let mut cmd = Command::new(path);
    cmd.args(args).env_clear();
    if let Ok(path_var) = std::env::var("PATH") {
        cmd.env("PATH", path_var);
    }
    // The allocator's options (`MIMALLOC_SHOW_STATS=1` prints its statistics at exit) and the
    // runtime's thread count (`TOKIO_WORKER_THREADS`), so a run's memory and CPU can be
    // explained and tried without rebuilding.
    let tuning = |name: &str| name.starts_with("MIMALLOC_") || name == "TOKIO_WORKER_THREADS";
    for (name, value) in std::env::vars().filter(|(name, _)| tuning(name)) {
        cmd.env(name, value);
    }
    for (name, value) in env.iter() {
        cmd.env(name, value);
    }
    cmd
}

fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// The last lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}
