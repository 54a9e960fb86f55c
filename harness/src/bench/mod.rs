//! The benchmark of issue 5 (`just bench`): one module per scenario, each reporting
//! [`Figure`]s next to a baseline measured in the same run.
//!
//! Order of a full run: the pgbench baselines ([`baseline`]), the no-op apalis drain
//! ([`noop`]), delivery throughput with 1 and 2 workers ([`delivery`]), inbound ingest
//! ([`ingest`]), end-to-end latency at half the ingest rate ([`e2e`]), history queries at
//! 1,000,000 rows ([`history`]), backpressure past the ingest capacity ([`overload`]), ordered
//! delivery per key ([`ordered`]), retention by dropping a day against deleting it and the
//! in-place migration to the partitioned history ([`partitioned`]), 1–4 worker and 1–2 api
//! replicas against one primary ([`scale`]). Memory figures come from the scenarios that run the
//! binaries. [`report`] prints the table and writes `bench/RESULTS.md`.

pub mod baseline;
pub mod delivery;
pub mod e2e;
pub mod history;
pub mod ingest;
pub mod machine;
pub mod noop;
pub mod ordered;
pub mod overload;
pub mod partitioned;
pub mod report;
pub mod scale;
pub mod stage;
pub mod suite;

use std::path::PathBuf;
use std::time::Duration;

use crate::procs::{Binaries, Env};

/// A boxed error: scenarios stop at the first failure and say why.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result of a scenario.
pub type BenchResult<T> = Result<T, BoxError>;

/// JWT secret of the benchmark's api processes.
pub const JWT_SECRET: &str = "wirehook-bench-jwt-secret-0123456789";
/// `SIGNALWIRE_SIGNING_KEY` of the benchmark's api processes.
pub const SIGNALWIRE_KEY: &str = "wirehook-bench-signalwire-key";
/// Prefix of the benchmark's scratch databases.
pub const DB_PREFIX: &str = "wirehook_bench";

/// One part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// pgbench baselines (`../shared/bench/baseline.sh`).
    Baseline,
    /// The no-op apalis-postgres drain (second delivery baseline).
    Noop,
    /// Delivery throughput with 1 and 2 worker processes.
    Delivery,
    /// Inbound SignalWire ingest.
    Ingest,
    /// End-to-end latency at half the ingest rate.
    E2e,
    /// End-to-end capacity: the highest offered rate with p99 < 100 ms and nothing lost.
    Capacity,
    /// History queries at 1,000,000 rows.
    History,
    /// Backpressure: 3× the ingest capacity, then 4,096 keep-alive connections.
    Overload,
    /// Ordered delivery: 10,000 keys × 5 events, 2 workers, against the unordered figure.
    Ordered,
    /// Retention: 30 days × 200,000 events; dropping the oldest day against deleting it.
    Retention,
    /// The in-place migration to the partitioned history at 1,000,000 events: downtime.
    Migrate,
    /// 1, 2 and 4 worker replicas × 1 and 2 api replicas against one primary: ingest/s,
    /// deliveries/s and the primary's CPU per delivery.
    Scale,
}

/// How big and how long; the defaults are the issue's.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Outbound events per delivery run (and no-op jobs).
    pub events: u64,
    /// Configurations the delivery events are spread over.
    pub configs: usize,
    /// Ingest duration.
    pub ingest: Duration,
    /// Ingest connections.
    pub connections: usize,
    /// End-to-end run duration.
    pub e2e: Duration,
    /// Worker processes during the end-to-end run.
    pub e2e_workers: usize,
    /// Requests per second of the end-to-end run when ingest did not run (otherwise half the
    /// measured ingest rate).
    pub e2e_rate: Option<f64>,
    /// History rows.
    pub history_rows: u64,
    /// Samples per history query.
    pub history_samples: usize,
    /// Seconds per pgbench baseline.
    pub baseline_secs: u64,
    /// pgbench clients.
    pub baseline_clients: usize,
    /// Duration of each overload phase.
    pub overload: Duration,
    /// Keep-alive connections of the overload scenario's second phase.
    pub overload_connections: usize,
    /// Days of history the retention scenario fills.
    pub retention_days: u32,
    /// Events per day of the retention scenario.
    pub retention_per_day: u64,
    /// Events of the in-place migration scenario.
    pub migrate_rows: u64,
    /// Measured window of each step of the scale scenario.
    pub scale_step: Duration,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            events: 50_000,
            configs: 8,
            ingest: Duration::from_secs(20),
            connections: 32,
            e2e: Duration::from_secs(10),
            e2e_workers: 2,
            e2e_rate: None,
            history_rows: 1_000_000,
            history_samples: 100,
            baseline_secs: 20,
            baseline_clients: 8,
            overload: Duration::from_secs(30),
            overload_connections: 4096,
            retention_days: 30,
            retention_per_day: 200_000,
            migrate_rows: 1_000_000,
            scale_step: Duration::from_secs(10),
        }
    }
}

/// Everything a scenario needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The release binaries.
    pub binaries: Binaries,
    /// The admin URL of the PostgreSQL server (scratch databases are created beside it).
    pub admin_url: String,
    /// The repository root (for `../shared/bench/baseline.sh`).
    pub repo_root: PathBuf,
    /// Where child processes log.
    pub log_dir: PathBuf,
    /// The path of this benchmark binary (the no-op drain runs as its own process).
    pub self_exe: PathBuf,
    /// Sizes and durations.
    pub scale: Scale,
}

impl Context {
    /// The environment every benchmark api gets on top of its database and address.
    /// The api's limits (`MAX_CONNECTIONS`, `MAX_INGEST_IN_FLIGHT`, …) are its defaults unless
    /// set in the bench's own environment, which a run trying other limits passes through.
    pub fn api_env(&self) -> Env {
        let mut env = Env::new()
            .with("JWT_SECRET", JWT_SECRET)
            .with("SIGNALWIRE_SIGNING_KEY", SIGNALWIRE_KEY)
            .with("RUST_LOG", "warn");
        for name in API_LIMITS {
            if let Ok(value) = std::env::var(name) {
                env = env.with(name, &value);
            }
        }
        env
    }

    /// The environment every benchmark worker gets (defaults otherwise, concurrency included).
    pub fn worker_env(&self) -> Env {
        Env::new().with("RUST_LOG", "warn")
    }
}

/// The api's limit settings the bench passes through from its own environment.
const API_LIMITS: [&str; 6] = [
    "MAX_CONNECTIONS",
    "MAX_INGEST_IN_FLIGHT",
    "INGEST_LATENCY_TARGET_MS",
    "MAX_API_IN_FLIGHT",
    "MAX_BODY_BYTES_IN_FLIGHT",
    "REQUEST_TIMEOUT_SECS",
];

/// Which way a figure should go to meet its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At least this value.
    AtLeast(f64),
    /// Below this value.
    Below(f64),
    /// At most this value.
    AtMost(f64),
    /// At least this multiple of the baseline.
    RatioAtLeast(f64),
    /// Exactly this value.
    Exactly(f64),
}

impl Target {
    /// Whether `value` (with `ratio` to its baseline, if any) meets the target.
    pub fn met(self, value: f64, ratio: Option<f64>) -> bool {
        match self {
            Self::AtLeast(t) => value >= t,
            Self::Below(t) => value < t,
            Self::AtMost(t) => value <= t,
            Self::RatioAtLeast(t) => ratio.is_some_and(|r| r >= t),
            Self::Exactly(t) => value == t,
        }
    }

    /// How the target prints, in the figure's unit.
    pub fn describe(self, unit: &str) -> String {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        match self {
            Self::AtLeast(t) => format!("≥ {}{unit}", report::number(t)),
            Self::Below(t) => format!("< {}{unit}", report::number(t)),
            Self::AtMost(t) => format!("≤ {}{unit}", report::number(t)),
            Self::RatioAtLeast(t) => format!("≥ {t:.1}× baseline"),
            Self::Exactly(t) => format!("= {}", report::number(t)),
        }
    }
}

/// A baseline a figure is compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// What it is.
    pub name: String,
    /// Its value, in the figure's unit.
    pub value: f64,
}

/// One measured number.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The scenario's section, e.g. `1. delivery`.
    pub section: String,
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit (`deliveries/s`, `ms`, `MiB`, ``).
    pub unit: String,
    /// What it is compared with.
    pub baseline: Option<Baseline>,
    /// The targets of the issue it must meet.
    pub targets: Vec<Target>,
}

impl Figure {
    /// A figure without baseline or target.
    pub fn new(section: &str, name: &str, value: f64, unit: &str) -> Self {
        Self {
            section: section.to_owned(),
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            baseline: None,
            targets: Vec::new(),
        }
    }

    /// This figure compared with `baseline` (none if the baseline was not measured).
    pub fn against(mut self, baseline: Option<(&str, f64)>) -> Self {
        self.baseline = baseline.map(|(name, value)| Baseline {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// This figure with one more target.
    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// `value / baseline` when there is a non-zero baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|b| b.value != 0.0)
            .map(|b| self.value / b.value)
    }

    /// Whether every target is met; `None` without targets.
    pub fn met(&self) -> Option<bool> {
        if self.targets.is_empty() {
            return None;
        }
        let ratio = self.ratio();
        Some(self.targets.iter().all(|t| t.met(self.value, ratio)))
    }
}

/// What a scenario hands back besides its figures: details for RESULTS.md.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// Markdown paragraphs and code blocks, in order.
    pub blocks: Vec<String>,
}

impl Notes {
    /// Adds a paragraph.
    pub fn text(&mut self, text: impl Into<String>) {
        self.blocks.push(text.into());
    }

    /// Adds a fenced code block.
    pub fn code(&mut self, title: &str, body: &str) {
        self.blocks
            .push(format!("{title}\n\n```\n{}\n```", body.trim_end()));
    }
}

/// Megabytes (MiB) from KiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
