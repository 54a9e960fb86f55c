//! The pgbench baselines: `$REPO/../shared/bench/baseline.sh PGURL SECONDS CLIENTS`, run in the
//! same session against the same server, parsed from its `<name> <per second>` lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::{BenchResult, Context};

/// TPC-B transactions/s.
pub const TPCB: &str = "tpcb";
/// Claim + complete one job per commit, jobs/s.
pub const QUEUE_ONE_COMMIT: &str = "queue_one_commit_jobs";
/// Claim 10 + complete 10 per statement pair, jobs/s.
pub const QUEUE_BATCH10: &str = "queue_batch10_jobs";
/// Rows/s inserted 100 per statement.
pub const ENQUEUE_BATCH100: &str = "enqueue_batch100_rows";

/// The measured baselines, by name.
#[derive(Debug, Clone, Default)]
pub struct Baselines {
    /// `<name> → per second`.
    pub values: BTreeMap<String, f64>,
    /// The command that measured them.
    pub command: String,
    /// Seconds per baseline and pgbench clients.
    pub secs: u64,
    /// pgbench clients.
    pub clients: usize,
}

impl Baselines {
    /// `(label, value)` of baseline `name`, if it was measured.
    pub fn get(&self, name: &str) -> Option<(&str, f64)> {
        self.values
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), *v))
    }

    /// The mean latency of one TPC-B transaction at the baseline's client count
    /// (clients / tps), in ms: the floor a request that commits once can expect.
    pub fn tpcb_latency_ms(&self) -> Option<f64> {
        let tps = *self.values.get(TPCB)?;
        (tps > 0.0).then(|| self.clients as f64 / tps * 1000.0)
    }
}

/// The script, relative to the repository: CI and clean clones have `../shared/` beside it.
pub fn script_path(repo_root: &Path) -> PathBuf {
    repo_root.join("../shared/bench/baseline.sh")
}

/// Runs the baselines for `secs` seconds each with `clients` pgbench clients.
pub async fn run(ctx: &Context) -> BenchResult<Baselines> {
    let script = script_path(&ctx.repo_root);
    if !script.is_file() {
        return Err(format!(
            "{} not found: the baselines live in ../shared/bench beside the repository",
            script.display()
        )
        .into());
    }
    let (secs, clients) = (ctx.scale.baseline_secs, ctx.scale.baseline_clients);
    let output = Command::new("bash")
        .arg(&script)
        .arg(&ctx.admin_url)
        .arg(secs.to_string())
        .arg(clients.to_string())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let values = parse(&String::from_utf8_lossy(&output.stdout));
    if values.is_empty() {
        return Err(format!("{} printed no baselines", script.display()).into());
    }
    Ok(Baselines {
        values,
        command: format!("../shared/bench/baseline.sh PGURL {secs} {clients}"),
        secs,
        clients,
    })
}

/// `<name> <number>` lines; other lines (and empty numbers) are skipped.
pub fn parse(stdout: &str) -> BTreeMap<String, f64> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_lines_parse_and_empty_values_are_skipped() {
        let parsed = parse("tpcb 1234.5\nqueue_one_commit_jobs 980\nqueue_batch10_jobs \n");
        assert_eq!(parsed.get(TPCB), Some(&1234.5));
        assert_eq!(parsed.get(QUEUE_ONE_COMMIT), Some(&980.0));
        assert_eq!(parsed.get(QUEUE_BATCH10), None);
    }
}
