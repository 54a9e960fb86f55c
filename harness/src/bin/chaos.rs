//! `chaos`: the fault-injection run (`just chaos`). Prints
//! `chaos: N events, D delivered, F failed, L lost, X duplicates` and exits 1 when a promise
//! was broken (anything lost, mismatched or unexplained), 2 when the run could not be carried
//! out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wirehook_harness::chaos::{self, Options};

/// Fault-injection run of the real binaries on 127.0.0.1 (see `just chaos`).
#[derive(Parser)]
#[command(name = "chaos")]
struct Cli {
    /// Outbound events to produce (source events fan out to 4 configurations each).
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Worker replicas.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// WORKER_CONCURRENCY of each replica.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Concurrent senders of provider webhooks and platform events.
    #[arg(long, default_value_t = 16)]
    senders: usize,
    /// Seed of the receivers' answers.
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// Milliseconds between worker SIGKILLs.
    #[arg(long, default_value_t = 4000)]
    kill_every_ms: u64,
    /// Milliseconds PostgreSQL stays down after its crash.
    #[arg(long, default_value_t = 3000)]
    outage_ms: u64,
    /// Seconds everything may take to settle after the load.
    #[arg(long, default_value_t = 240)]
    settle_secs: u64,
    /// Folder holding the `api` and `worker` binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Folder for the children's logs.
    #[arg(long, default_value = "target/chaos")]
    log_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = Options {
        events: cli.events,
        workers: cli.workers,
        concurrency: cli.concurrency,
        senders: cli.senders,
        seed: cli.seed,
        kill_every: Duration::from_millis(cli.kill_every_ms),
        outage: Duration::from_millis(cli.outage_ms),
        settle_timeout: Duration::from_secs(cli.settle_secs),
        bin_dir: cli.bin_dir,
        log_dir: cli.log_dir,
    };
    match chaos::run(&opts).await {
        Ok(outcome) => {
            let report = &outcome.report;
            eprintln!(
                "chaos: {} worker kills, {} PostgreSQL crash, {} api restart, {} requests refused and retried",
                outcome.kills, outcome.outages, outcome.api_restarts, outcome.refused_requests
            );
            for example in &report.examples {
                eprintln!("chaos: problem: {example}");
            }
            eprintln!("{}", report.details());
            println!("{} in {:.0?}", report.line(), outcome.elapsed);
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("chaos: error: {error}");
            ExitCode::from(2)
        }
    }
}
