//! The printed table and `bench/RESULTS.md`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::machine::Machine;
use super::{Figure, Notes};

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// When the run started.
    pub started: Option<DateTime<Utc>>,
    /// How long it took, seconds.
    pub secs: f64,
    /// The machine.
    pub machine: Machine,
    /// How it was run.
    pub commands: Vec<String>,
    /// Every figure, in order.
    pub figures: Vec<Figure>,
    /// Details per section (plans, CPU split, failures), in order.
    pub sections: Vec<(String, Notes)>,
    /// Set when the run was not the full benchmark (which flags).
    pub partial: Option<String>,
}

impl Report {
    /// Adds notes under `title` (appended to an existing section of that title).
    pub fn notes(&mut self, title: &str) -> &mut Notes {
        let index = match self.sections.iter().position(|(t, _)| t == title) {
            Some(index) => index,
            None => {
                self.sections.push((title.to_owned(), Notes::default()));
                self.sections.len() - 1
            }
        };
        &mut self.sections[index].1
    }

    /// Targets met and missed.
    pub fn tally(&self) -> (usize, usize) {
        let checked: Vec<bool> = self.figures.iter().filter_map(Figure::met).collect();
        let met = checked.iter().filter(|m| **m).count();
        (met, checked.len() - met)
    }
}

/// A number as printed: thousands separated with no decimals from 1,000 up, two significant
/// decimals below.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 {
        let rounded = v.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// How each figure is measured (RESULTS.md's method section).
const METHOD: &str = "\
- Every process is a real release binary (`target/release/api`, `worker`) started with its \
  environment, against a fresh database per scenario created on the same server and migrated \
  by `api migrate`; every receiver is an in-process HTTP/1.1 keep-alive server on 127.0.0.1 \
  answering 200 and verifying each Standard Webhooks signature. Baselines come from \
  `../shared/bench/baseline.sh` (pgbench), run in the same session against the same server \
  for the ingest duration, and from a no-op apalis-postgres worker with the worker's own \
  storage settings, concurrency 32, draining the same number of jobs in its own process.
- Delivery: N pending outbound events over 8 configurations enqueued with \
  `wirehook_core::queue::enqueue` (1,000 per transaction) before the workers start; then 1, \
  then 2 `worker` processes with default settings. Rate = distinct `webhook-id`s / (last \
  arrival − first arrival); afterwards every event must be `delivered` in the database; \
  duplicates = arrivals − distinct ids.
- Ingest: closed loop, 32 keep-alive connections, signed SignalWire JSON `call.completed` \
  webhooks with distinct call ids, each fanning out to the one matching configuration; no \
  worker runs; 1 s unmeasured warm-up. An error is anything but 200 `processed` with 1 delivery.
- End-to-end: open loop at half the measured ingest rate with 2 workers running; latency = \
  receiver's first arrival of the delivery − the moment the provider had read the api's answer \
  (matched through `parent_event_id` and the message id).
- History: 1,000,000 rows from one `INSERT … SELECT generate_series`, `VACUUM ANALYZE`, then \
  each query sequentially over HTTP (3 warm-up requests); the baseline is the same SQL run \
  directly over one connection. Plans are `EXPLAIN (ANALYZE, BUFFERS)`.
- Overload: 2 workers delivering; phase one offers 3× the ingest capacity measured in the same \
  run (open loop on 384 keep-alive connections opened beforehand: request i is due at i/rate and \
  written on the first free connection), phase two keeps 4,096 keep-alive connections busy \
  (closed loop, the loops started over 1 s, each waiting the `Retry-After` plus up to as much \
  again of jitter after a 503), 30 s each, the api at its default limits. Latency runs from the \
  write of the request on an open connection to its whole answer; the time a request waited in \
  the generator first (for a free connection, or reconnecting after a refusal) is its lag, \
  reported apart. An answer is 200 \
  `processed` (accepted) or 503 `overloaded` with `Retry-After`; anything else, and a client \
  timeout (10 s), is an error. After the load the phase waits until no outbound event is \
  pending, then checks each accepted event: delivered (database and receiver), still pending \
  (not delivered yet), failed, or lost.
- Memory: `VmHWM` from `/proc/<pid>/status` just before each process is stopped.
- CPU split and database work: `/proc/<pid>/stat` of the children, of the PostgreSQL backends \
  serving the scenario's database and of every other PostgreSQL process, and deltas of \
  `pg_stat_database` / `pg_stat_user_tables`.";

struct Row {
    section: String,
    name: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
    met: String,
}

fn rows(figures: &[Figure]) -> Vec<Row> {
    figures
        .iter()
        .map(|f| Row {
            section: f.section.clone(),
            name: f.name.clone(),
            value: if f.unit.is_empty() {
                number(f.value)
            } else {
                format!("{} {}", number(f.value), f.unit)
            },
            baseline: f
                .baseline
                .as_ref()
                .map(|b| format!("{} = {}", b.name, number(b.value)))
                .unwrap_or_else(|| "–".into()),
            ratio: f
                .ratio()
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into()),
            target: if f.targets.is_empty() {
                "–".into()
            } else {
                f.targets
                    .iter()
                    .map(|t| t.describe(&f.unit))
                    .collect::<Vec<_>>()
                    .join(" and ")
            },
            met: match f.met() {
                Some(true) => "yes".into(),
                Some(false) => "MISSED".into(),
                None => "".into(),
            },
        })
        .collect()
}

/// The figures as an aligned plain-text table.
pub fn table(figures: &[Figure]) -> String {
    let header = [
        "section", "figure", "value", "baseline", "ratio", "target", "met",
    ];
    let rows = rows(figures);
    let cells = |r: &Row| {
        [
            r.section.clone(),
            r.name.clone(),
            r.value.clone(),
            r.baseline.clone(),
            r.ratio.clone(),
            r.target.clone(),
            r.met.clone(),
        ]
    };
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(cells(row)) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            let pad = w - cell.chars().count();
            out.push_str(cell);
            out.push_str(&" ".repeat(pad + 2));
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(&cells(row)));
        out.push('\n');
    }
    out
}

/// The whole report as Markdown (`bench/RESULTS.md`).
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let started = report
        .started
        .map(|s| s.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "# wirehook benchmark results\n");
    if let Some(flags) = &report.partial {
        let _ = writeln!(
            out,
            "> Partial run ({flags}): not the issue's full benchmark.\n"
        );
    }
    let _ = writeln!(out, "- Date: {started} (run took {:.0} s)", report.secs);
    let _ = writeln!(
        out,
        "- Machine: `nproc` = {}, {} MiB memory, {}, Linux {}",
        m.nproc, m.memory_mib, m.cpu, m.kernel
    );
    let _ = writeln!(out, "- PostgreSQL: {}", m.postgres);
    let _ = writeln!(out, "- Server settings: {}", m.postgres_settings);
    let durability = if m.durable {
        "production (fsync, full_page_writes and synchronous_commit on): figures are headline \
         figures"
    } else {
        "**disposable** (fsync, full_page_writes or synchronous_commit off, e.g. `--fast-db`): \
         for iteration only, not headline figures"
    };
    let _ = writeln!(out, "- Durability: {durability}");
    let _ = writeln!(
        out,
        "- The machine is shared: other sessions' builds and tests may run at the same time \
         (see the CPU split per scenario)."
    );
    let _ = writeln!(out, "\n## Commands\n\n```");
    for command in &report.commands {
        let _ = writeln!(out, "{command}");
    }
    let _ = writeln!(out, "```\n");
    let _ = writeln!(out, "## Method\n\n{METHOD}\n");
    let (met, missed) = report.tally();
    let _ = writeln!(out, "## Figures\n\nTargets met: {met}, missed: {missed}.\n");
    if missed > 0 {
        let _ = writeln!(
            out,
            "Where the time goes for the missed targets, and what was tried: `bench/PROFILE.md`.\n"
        );
    }
    let _ = writeln!(
        out,
        "| section | figure | value | baseline (same run) | ratio | target | met |"
    );
    let _ = writeln!(out, "|---|---|---:|---|---:|---|---|");
    for r in rows(&report.figures) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.section, r.name, r.value, r.baseline, r.ratio, r.target, r.met
        );
    }
    for (title, notes) in &report.sections {
        let _ = writeln!(out, "\n## {title}\n");
        for block in &notes.blocks {
            let _ = writeln!(out, "{block}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Target;

    #[test]
    fn numbers_print_with_separators_or_few_decimals() {
        assert_eq!(number(50_000.0), "50,000");
        assert_eq!(number(1234.56), "1,235");
        assert_eq!(number(512.3), "512");
        assert_eq!(number(42.25), "42.2");
        assert_eq!(number(4.256), "4.26");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn a_figure_row_shows_baseline_ratio_and_whether_targets_are_met() {
        let figure = Figure::new("1. delivery", "2 workers", 6000.0, "deliveries/s")
            .against(Some(("queue_one_commit_jobs", 4000.0)))
            .target(Target::AtLeast(5000.0))
            .target(Target::RatioAtLeast(1.0));
        let printed = table(&[figure]);
        assert!(printed.contains("6,000 deliveries/s"), "{printed}");
        assert!(
            printed.contains("queue_one_commit_jobs = 4,000"),
            "{printed}"
        );
        assert!(printed.contains("1.50×"), "{printed}");
        assert!(printed.contains("yes"), "{printed}");
    }
}
