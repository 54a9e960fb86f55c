//! What a soak run prints and writes: the progress lines, the one summary line, the verdict on
//! each resource, `SOAK.md` and the panels of `soak.svg`.

use std::fmt::Write as _;

use super::Outcome;
use super::plot::Panel;
use super::sample::{RESOURCES, Sample, WORKER_RSS_FLOOR, series, worker_rss_series};
use super::trend::{self, RELATIVE_LIMIT, Trend};

/// The judgement of one gated resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The resource (`worker-1 RSS` for one replica).
    pub name: String,
    pub unit: &'static str,
    pub trend: Trend,
}

/// The trend of every gated resource, each worker's memory on its own.
pub fn verdicts(samples: &[Sample]) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = RESOURCES
        .iter()
        .filter(|r| r.gated)
        .map(|r| Verdict {
            name: r.name.to_owned(),
            unit: r.unit,
            trend: trend::trend(&series(samples, r), r.floor),
        })
        .collect();
    let workers = samples
        .iter()
        .map(|s| s.worker_rss.len())
        .max()
        .unwrap_or(0);
    for i in 0..workers {
        out.insert(
            1 + i,
            Verdict {
                name: format!("worker-{i} RSS"),
                unit: "MiB",
                trend: trend::trend(&worker_rss_series(samples, i), WORKER_RSS_FLOOR),
            },
        );
    }
    out
}

/// Whether the run passed: nothing lost, the queue drained, no resource growing.
pub fn passed(outcome: &Outcome, verdicts: &[Verdict]) -> bool {
    outcome.account.lost == 0
        && outcome.drained_after.is_some()
        && verdicts.iter().all(|v| !v.trend.growing())
}

/// `soak: N minutes, E events, D delivered, L lost, RSS api X→Y MiB worker X→Y MiB, jobs table
/// X→Y MiB` (first and last sample; the worker is the larger replica).
pub fn summary_line(outcome: &Outcome) -> String {
    let first = outcome.samples.first().cloned().unwrap_or_default();
    let last = outcome.samples.last().cloned().unwrap_or_default();
    let a = &outcome.account;
    format!(
        "soak: {} minutes, {} events, {} delivered, {} lost, RSS api {:.0}→{:.0} MiB worker \
         {:.0}→{:.0} MiB, jobs table {:.1}→{:.1} MiB",
        number(outcome.opts.duration.as_secs_f64() / 60.0),
        a.events,
        a.delivered,
        a.lost,
        first.api_rss,
        last.api_rss,
        first.worker_rss_max(),
        last.worker_rss_max(),
        first.jobs_mib,
        last.jobs_mib
    )
}

/// One line per sample while the run goes.
pub fn progress_line(s: &Sample) -> String {
    format!(
        "t={:.0}s accepted {} delivered {} | RSS api {:.0} worker {:.0} MiB | jobs {:.0} rows \
         {:.1} MiB | events {:.0} rows {:.1} MiB | lag {:.1} s | p99 {} | CPU/delivery {}",
        s.t,
        s.accepted,
        s.delivered,
        s.api_rss,
        s.worker_rss_max(),
        s.jobs_rows,
        s.jobs_mib,
        s.events_rows,
        s.events_mib,
        s.lag,
        s.delivery_p99_ms
            .map_or("-".to_owned(), |v| format!("{v:.0} ms")),
        s.cpu_ms_per_delivery
            .map_or("-".to_owned(), |v| format!("{v:.2} ms")),
    )
}

/// The panels of the plot: every resource, judged ones with their verdict.
pub fn panels(samples: &[Sample], verdicts: &[Verdict]) -> Vec<Panel> {
    RESOURCES
        .iter()
        .map(|r| {
            let verdict = verdicts.iter().find(|v| v.name == r.name);
            let growing = verdict.is_some_and(|v| v.trend.growing());
            let label = match verdict {
                Some(_) if growing => " — GROWING",
                Some(_) => " — flat",
                None => "",
            };
            Panel::new(
                format!("{} ({}){label}", r.name, r.unit),
                &series(samples, r),
                growing,
            )
        })
        .collect()
}

/// The rule, as SOAK.md and the README state it.
pub fn rule() -> String {
    format!(
        "a least-squares line is fitted to each resource's samples from the middle of the run \
         to its end; the resource **keeps growing** when that line's rise over the second half \
         exceeds {:.0}% of the resource's mean over the second half plus a floor of its own \
         (RSS 8 MiB per process, table rows 2,000, table sizes 4 MiB, queue lag 10 s) **and** a \
         line fitted to the last quarter alone, projected over the half, exceeds it too (a step \
         that levels off before the last quarter is not a leak), or when the second half or its \
         last quarter holds fewer than three samples. The run fails when a resource keeps \
         growing, when an accepted event is lost, or when the queue does not drain",
        RELATIVE_LIMIT * 100.0
    )
}

/// `bench/SOAK.md`.
pub fn markdown(outcome: &Outcome, verdicts: &[Verdict], date: &str, commit: &str) -> String {
    let o = &outcome.opts;
    let a = &outcome.account;
    let mut md = String::new();
    let verdict = if passed(outcome, verdicts) {
        "**passed**"
    } else {
        "**FAILED**"
    };
    let _ = writeln!(md, "# Soak run\n");
    let _ = writeln!(
        md,
        "Written by `just soak` ({date}, commit `{commit}`): {verdict}.\n\n```\n{}\n```\n",
        summary_line(outcome)
    );
    let _ = writeln!(md, "## Set-up\n");
    let rate = match &outcome.rate_source {
        super::RateSource::Given => {
            format!("{:.0} source events/s, given with `--rate`", outcome.rate)
        }
        super::RateSource::Measured {
            ingest,
            delivered,
            secs,
            connections,
        } => format!(
            "{:.0} source events/s: half the end-to-end capacity measured at the start \
             ({secs:.0} s closed loop over {connections} connections on the same stack: ingest \
             {ingest:.0}/s, deliveries {delivered:.0}/s; the smaller is the capacity)",
            outcome.rate
        ),
    };
    let _ = writeln!(
        md,
        "- The real `api` and {} `worker` replicas (release build) on a throwaway PostgreSQL \
         cluster on 127.0.0.1, for {} minutes of steady load, a sample every {} s.\n\
         - Load: signed SignalWire `call.completed` webhooks, open loop at {rate} (at most {} \
         requests on the wire at once; one due while all are busy waits in the generator); each \
         fans out to one of {} configurations (endpoints on one local receiver).\n\
         - Receivers: {}% of the deliveries are answered 500 on every attempt, {}% hang past \
         the delivery timeout on every attempt (both end `failed` after {} attempts, 2 s then \
         4 s apart), the rest are answered 200 at once. Failures are spread over all endpoints \
         by the delivery's `webhook-id`.\n\
         - Retention: `RETENTION_SECS={}` with `RETENTION_INTERVAL_SECS=60`, so retention \
         purges every minute during the run; `JOB_HISTORY_SECS={}`.\n\
         - api environment (besides its address and database): `{}`\n\
         - worker environment (besides its address, database and name): `{}`\n\
         - PostgreSQL: {}\n\
         - PostgreSQL settings (durability, and every setting not at its default): {}\n",
        o.workers,
        number(o.duration.as_secs_f64() / 60.0),
        o.sample_every.as_secs(),
        super::SENDERS,
        super::plan::CONFIGS,
        super::plan::FAILING_PCT,
        super::plan::HANGING_PCT,
        super::plan::MAX_ATTEMPTS,
        o.retention.as_secs(),
        o.job_history.as_secs(),
        env_line(&outcome.api_env),
        env_line(&outcome.worker_env),
        outcome.postgres,
        outcome
            .postgres_settings
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let _ = writeln!(md, "## Every accepted event\n");
    let _ = writeln!(
        md,
        "{} source events accepted ({} not accepted after {} tries; {} answers `503 overloaded`, \
         each sent again after its `Retry-After`, as a provider does), {} delivered, {} failed \
         as planned, \
         **{} lost**. After the load the queue {}. An event planned to succeed counts when the \
         receiver saw it answered 2xx and its row is `delivered` or was purged by retention \
         (which deletes only final states). One planned to fail counts when the run saw its \
         row `failed` after all {} attempts (it reads each such row as soon as it settles, \
         before retention can delete it), or, had it not, when the receiver saw every attempt; \
         {} of the failed ones had attempts that timed out before the receiver read them.\n",
        a.events,
        outcome.refused,
        super::RESENDS + 1,
        outcome.overloaded,
        a.delivered,
        a.failed,
        a.lost,
        outcome
            .drained_after
            .map_or("did NOT drain".to_owned(), |d| format!(
                "drained in {:.0} s",
                d.as_secs_f64()
            )),
        super::plan::MAX_ATTEMPTS,
        a.unseen_attempts,
    );
    for example in &a.examples {
        let _ = writeln!(md, "- lost: {example}");
    }
    let _ = writeln!(md, "## Trends\n");
    let _ = writeln!(md, "The rule: {}.\n", rule());
    let _ = writeln!(
        md,
        "| resource | mean (2nd half) | rise over 2nd half | last quarter's rise, projected | allowed | verdict |\n|---|---:|---:|---:|---:|---|"
    );
    for v in verdicts {
        let t = &v.trend;
        let _ = writeln!(
            md,
            "| {} | {} {} | {:+.2} {} | {:+.2} {} | {:.2} {} | {} |",
            v.name,
            number(t.mean),
            v.unit,
            t.growth,
            v.unit,
            t.recent_growth,
            v.unit,
            t.limit,
            v.unit,
            if t.growing() { "**growing**" } else { "flat" }
        );
    }
    let _ = writeln!(
        md,
        "\nDelivery p99 and CPU per delivery are shown, not judged: they follow the machine's \
         other users (2 shared cores).\n\n![soak](soak.svg)\n"
    );
    let _ = writeln!(md, "## Samples\n");
    let _ = writeln!(
        md,
        "| t (min) | accepted | delivered | api RSS (MiB) | worker RSS (MiB) | jobs rows | jobs \
         (MiB) | events rows | events (MiB) | attempts (MiB) | pending jobs | lag (s) | delivery \
         p99 (ms) | CPU/delivery (ms) | CPU api/workers/pg (s) | events purged | jobs deleted |\n\
         |---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    );
    for s in &outcome.samples {
        let _ = writeln!(
            md,
            "| {:.1} | {} | {} | {:.1} | {} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {} | {} | {:.1}/{:.1}/{:.1} | {:.0} | {:.0} |",
            s.t / 60.0,
            s.accepted,
            s.delivered,
            s.api_rss,
            s.worker_rss
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            s.jobs_rows,
            s.jobs_mib,
            s.events_rows,
            s.events_mib,
            s.attempts_mib,
            s.pending_jobs,
            s.lag,
            s.delivery_p99_ms
                .map_or("-".to_owned(), |v| format!("{v:.0}")),
            s.cpu_ms_per_delivery
                .map_or("-".to_owned(), |v| format!("{v:.2}")),
            s.cpu_secs[0],
            s.cpu_secs[1],
            s.cpu_secs[2],
            s.events_deleted,
            s.jobs_deleted,
        );
    }
    md
}

fn env_line(env: &crate::procs::Env) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A number without needless decimals (`30`, `2.5`, `1234`).
pub fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_samples(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                t: i as f64 * 30.0,
                api_rss: 40.0,
                worker_rss: vec![30.0, 31.0],
                jobs_mib: 2.0,
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn each_worker_is_judged_on_its_own() {
        let mut samples = flat_samples(20);
        for (i, s) in samples.iter_mut().enumerate() {
            s.worker_rss[1] = 30.0 + 2.0 * i as f64;
        }
        let v = verdicts(&samples);
        let growing: Vec<&str> = v
            .iter()
            .filter(|v| v.trend.growing())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(growing, ["worker-1 RSS"]);
    }

    #[test]
    fn numbers_drop_needless_decimals() {
        assert_eq!(
            [number(30.0), number(2.5), number(0.126), number(1234.4)],
            ["30", "2.5", "0.13", "1234"]
        );
    }
}
