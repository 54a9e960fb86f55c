//! `bench`: the benchmark of issue 5 against the real release binaries, printing a table and
//! writing `bench/RESULTS.md`. `just bench` builds everything and runs it; flags pick one
//! scenario or a smaller scale for iterating (`just bench --only delivery --events 5000`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wirehook_harness::bench::report::{self, Report};
use wirehook_harness::bench::{Context, Scale, Scenario, noop, suite};
use wirehook_harness::procs::Binaries;

#[derive(Parser)]
#[command(
    name = "bench",
    about = "wirehook benchmark (issue 5): real binaries, real PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// (internal) The no-op apalis drain, run as its own process by the benchmark.
    #[command(hide = true)]
    NoopDrain {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        jobs: u64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Admin URL of the PostgreSQL server; scratch databases are created beside it.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Run only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Outbound events per delivery run (and jobs of the no-op drain).
    #[arg(long, default_value_t = 50_000)]
    events: u64,
    /// Configurations the delivery events are spread over.
    #[arg(long, default_value_t = 8)]
    configs: usize,
    /// Ingest duration in seconds.
    #[arg(long, default_value_t = 20)]
    ingest_secs: u64,
    /// Ingest connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// End-to-end duration in seconds.
    #[arg(long, default_value_t = 10)]
    e2e_secs: u64,
    /// Worker processes during the end-to-end run.
    #[arg(long, default_value_t = 2)]
    e2e_workers: usize,
    /// End-to-end requests/s (default: half the ingest rate measured in the same run).
    #[arg(long)]
    e2e_rate: Option<f64>,
    /// Event rows of the history scenario.
    #[arg(long, default_value_t = 1_000_000)]
    history_rows: u64,
    /// Requests per history query.
    #[arg(long, default_value_t = 100)]
    history_samples: usize,
    /// Seconds per pgbench baseline (default: the ingest duration).
    #[arg(long)]
    baseline_secs: Option<u64>,
    /// pgbench clients.
    #[arg(long, default_value_t = 8)]
    baseline_clients: usize,
    /// Seconds of each overload phase.
    #[arg(long, default_value_t = 30)]
    overload_secs: u64,
    /// Keep-alive connections of the overload scenario's second phase.
    #[arg(long, default_value_t = 4096)]
    overload_connections: usize,
    /// Days of history the retention scenario fills.
    #[arg(long, default_value_t = 30)]
    retention_days: u32,
    /// Events per day of the retention scenario.
    #[arg(long, default_value_t = 200_000)]
    retention_per_day: u64,
    /// Events of the in-place migration scenario.
    #[arg(long, default_value_t = 1_000_000)]
    migrate_rows: u64,
    /// Measured seconds of each step of the scale scenario (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    scale_secs: u64,
    /// Where `api` and `worker` are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the children log.
    #[arg(long, default_value = "target/bench-logs")]
    log_dir: PathBuf,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
    /// The repository root (`../shared/bench/baseline.sh` is found beside it).
    #[arg(long, default_value = ".")]
    repo_root: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Some(Command::NoopDrain { database_url, jobs }) => {
            runtime.block_on(noop_drain(&database_url, jobs))
        }
        None => runtime.block_on(run(cli.run)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn noop_drain(database_url: &str, jobs: u64) -> Result<(), String> {
    let drained = noop::drain(database_url, jobs, Duration::from_secs(300))
        .await
        .map_err(|e| e.to_string())?;
    let line = serde_json::to_string(&drained).map_err(|e| e.to_string())?;
    println!("{line}");
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), String> {
    let admin_url = args
        .database_url
        .clone()
        .ok_or("DATABASE_URL (or --database-url) must name a PostgreSQL server")?;
    let binaries = Binaries::new(&args.bin_dir);
    binaries.check().map_err(|e| e.to_string())?;
    let self_exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let scale = Scale {
        events: args.events,
        configs: args.configs.max(1),
        ingest: Duration::from_secs(args.ingest_secs),
        connections: args.connections.max(1),
        e2e: Duration::from_secs(args.e2e_secs),
        e2e_workers: args.e2e_workers.max(1),
        e2e_rate: args.e2e_rate,
        history_rows: args.history_rows,
        history_samples: args.history_samples.max(1),
        baseline_secs: args.baseline_secs.unwrap_or(args.ingest_secs),
        baseline_clients: args.baseline_clients.max(1),
        overload: Duration::from_secs(args.overload_secs),
        overload_connections: args.overload_connections.max(1),
        retention_days: args.retention_days.max(2),
        retention_per_day: args.retention_per_day.max(10),
        migrate_rows: args.migrate_rows.max(100),
        scale_step: Duration::from_secs(args.scale_secs.max(1)),
    };
    let partial = partial_flags(&args, &scale);
    let ctx = Context {
        binaries,
        admin_url,
        repo_root: args.repo_root.clone(),
        log_dir: args.log_dir.clone(),
        self_exe,
        scale,
    };
    let mut report = Report {
        partial,
        commands: vec![
            "just bench".to_owned(),
            format!(
                "target/release/bench {}",
                std::env::args().skip(1).collect::<Vec<_>>().join(" ")
            )
            .trim_end()
            .to_owned(),
        ],
        ..Report::default()
    };
    let failed = suite::run(&ctx, &args.only, &mut report).await;

    println!("\n{}", report::table(&report.figures));
    let (met, missed) = report.tally();
    println!(
        "targets met: {met}, missed: {missed}; took {:.0} s",
        report.secs
    );
    if let Some(dir) = args.results.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&args.results, report::markdown(&report))
        .map_err(|e| format!("cannot write {}: {e}", args.results.display()))?;
    println!("wrote {}", args.results.display());
    if failed {
        return Err("a scenario failed (see above)".into());
    }
    Ok(())
}

/// The flags that make this run differ from the full benchmark, if any.
fn partial_flags(args: &RunArgs, scale: &Scale) -> Option<String> {
    let full = Scale::default();
    let mut flags = Vec::new();
    if !args.only.is_empty() {
        let names: Vec<String> = args
            .only
            .iter()
            .map(|s| format!("{s:?}").to_lowercase())
            .collect();
        flags.push(format!("--only {}", names.join(",")));
    }
    let differs = [
        (
            scale.events != full.events,
            format!("--events {}", scale.events),
        ),
        (
            scale.configs != full.configs,
            format!("--configs {}", scale.configs),
        ),
        (
            scale.ingest != full.ingest,
            format!("--ingest-secs {}", scale.ingest.as_secs()),
        ),
        (
            scale.connections != full.connections,
            format!("--connections {}", scale.connections),
        ),
        (
            scale.e2e != full.e2e,
            format!("--e2e-secs {}", scale.e2e.as_secs()),
        ),
        (scale.e2e_rate.is_some(), "--e2e-rate".to_owned()),
        (
            scale.history_rows != full.history_rows,
            format!("--history-rows {}", scale.history_rows),
        ),
        (
            scale.history_samples != full.history_samples,
            format!("--history-samples {}", scale.history_samples),
        ),
        (
            scale.baseline_secs != full.baseline_secs,
            format!("--baseline-secs {}", scale.baseline_secs),
        ),
        (
            scale.overload != full.overload,
            format!("--overload-secs {}", scale.overload.as_secs()),
        ),
        (
            scale.overload_connections != full.overload_connections,
            format!("--overload-connections {}", scale.overload_connections),
        ),
        (
            scale.retention_days != full.retention_days,
            format!("--retention-days {}", scale.retention_days),
        ),
        (
            scale.retention_per_day != full.retention_per_day,
            format!("--retention-per-day {}", scale.retention_per_day),
        ),
        (
            scale.migrate_rows != full.migrate_rows,
            format!("--migrate-rows {}", scale.migrate_rows),
        ),
        (
            scale.scale_step != full.scale_step,
            format!("--scale-secs {}", scale.scale_step.as_secs()),
        ),
    ];
    flags.extend(differs.into_iter().filter(|(d, _)| *d).map(|(_, f)| f));
    (!flags.is_empty()).then(|| flags.join(" "))
}
