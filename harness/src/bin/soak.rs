//! `soak`: the soak run (`just soak`). Prints progress, then exactly one line
//! `soak: N minutes, E events, D delivered, L lost, RSS api X→Y MiB worker X→Y MiB, jobs table
//! X→Y MiB` on stdout; writes `SOAK.md` and `soak.svg` into `--out-dir`. Exits 1 when an event
//! was lost, the queue did not drain or a resource keeps growing, 2 when the run could not be
//! carried out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wirehook_harness::soak::{self, Options, plot, report};

/// Soak run of the real binaries on 127.0.0.1 (see `just soak`).
#[derive(Parser)]
#[command(name = "soak")]
struct Cli {
    /// Minutes of steady load.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Source events per second; without it, the end-to-end capacity is measured first
    /// (`--calibrate-secs`) and half of it is offered.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of the capacity measurement.
    #[arg(long, default_value_t = 20)]
    calibrate_secs: u64,
    /// Connections of the capacity measurement.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// The workers' RETENTION_SECS (at least 60).
    #[arg(long, default_value_t = 120)]
    retention_secs: u64,
    /// The workers' JOB_HISTORY_SECS.
    #[arg(long, default_value_t = 60)]
    job_history_secs: u64,
    /// Worker replicas.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seconds the queue may take to drain after the load.
    #[arg(long, default_value_t = 300)]
    drain_secs: u64,
    /// Folder holding the `api` and `worker` binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Folder for the children's logs.
    #[arg(long, default_value = "target/soak")]
    log_dir: PathBuf,
    /// Where SOAK.md and soak.svg go.
    #[arg(long, default_value = "bench")]
    out_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = Options {
        duration: Duration::from_secs_f64(cli.minutes.max(0.1) * 60.0),
        rate: cli.rate,
        calibrate: Duration::from_secs(cli.calibrate_secs.max(2)),
        connections: cli.connections.max(1),
        sample_every: Duration::from_secs(cli.sample_secs.max(1)),
        retention: Duration::from_secs(cli.retention_secs),
        job_history: Duration::from_secs(cli.job_history_secs),
        workers: cli.workers.max(1),
        drain_timeout: Duration::from_secs(cli.drain_secs),
        bin_dir: cli.bin_dir,
        log_dir: cli.log_dir,
    };
    let outcome = match soak::run(&opts).await {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("soak: error: {error}");
            return ExitCode::from(2);
        }
    };
    let verdicts = report::verdicts(&outcome.samples);
    for example in &outcome.account.examples {
        eprintln!("soak: lost: {example}");
    }
    for v in verdicts.iter().filter(|v| v.trend.growing()) {
        eprintln!(
            "soak: {} keeps growing: {:+.2} {} over the second half (allowed {:.2})",
            v.name, v.trend.growth, v.unit, v.trend.limit
        );
    }
    if let Err(error) = write_report(&cli.out_dir, &outcome, &verdicts) {
        eprintln!("soak: cannot write the report: {error}");
        return ExitCode::from(2);
    }
    println!("{}", report::summary_line(&outcome));
    if report::passed(&outcome, &verdicts) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn write_report(
    dir: &std::path::Path,
    outcome: &soak::Outcome,
    verdicts: &[report::Verdict],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let svg = plot::svg(&report::panels(&outcome.samples, verdicts), 3)?;
    std::fs::write(dir.join("soak.svg"), svg).map_err(|e| e.to_string())?;
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_owned(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        });
    let md = report::markdown(outcome, verdicts, &date, &commit);
    std::fs::write(dir.join("SOAK.md"), md).map_err(|e| e.to_string())?;
    eprintln!(
        "soak: wrote {} and {}",
        dir.join("SOAK.md").display(),
        dir.join("soak.svg").display()
    );
    Ok(())
}
