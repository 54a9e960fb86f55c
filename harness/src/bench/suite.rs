//! Runs the scenarios in order and turns what they measured into [`Figure`]s with their
//! baselines and the targets. A scenario that fails is reported as failed and the
//! others still run.

use std::time::Instant;

use chrono::Utc;

use super::baseline::{self, Baselines, ENQUEUE_BATCH100, QUEUE_ONE_COMMIT, TPCB};
use super::delivery::{self, DeliveryRun};
use super::e2e::{self, Capacity, E2eRun};
use super::history::{self, HistoryRun};
use super::ingest::{self, IngestRun};
use super::machine::{CpuSplit, Machine};
use super::noop::{self, Drained};
use super::ordered::{self, OrderedRun};
use super::overload::{self, OverloadRun};
use super::partitioned::{self, MigrationRun, RetentionRun};
use super::report::Report;
use super::scale::{self, ScaleRun};
use super::{BoxError, Context, Figure, Scenario, Target, mib};
use crate::stats::ms;

/// Offered rate of the end-to-end run when neither ingest ran nor a rate was given.
const DEFAULT_E2E_RATE: f64 = 500.0;
/// Peak RSS target per process, MiB.
const RSS_TARGET_MIB: f64 = 100.0;

const BASELINES: &str = "0. baselines";
const DELIVERY: &str = "1. delivery";
const INGEST: &str = "2. ingest";
const E2E: &str = "3. end-to-end";
const HISTORY: &str = "4. history";
const MEMORY: &str = "5. memory";
const OVERLOAD: &str = "6. overload";
const ORDERED: &str = "7. ordered";
const RETENTION: &str = "8. retention";
const MIGRATE: &str = "9. partitioning in place";
const EFFICIENCY: &str = "11. efficiency";
/// The end-to-end rate the latency target is read at, unless half the ingest rate is
/// higher.
const E2E_TARGET_RATE: f64 = 2000.0;
/// End-to-end CPU per delivered event (api + worker + PostgreSQL), ms: 40% below the 0.73 ms
/// measured before the work on efficiency.
const E2E_CPU_TARGET_MS: f64 = 0.45;
const SCALE: &str = "10. scale";

/// Runs the `only` scenarios (all when empty) and returns the report; `failed` tells whether
/// any scenario could not finish.
pub async fn run(ctx: &Context, only: &[Scenario], report: &mut Report) -> bool {
    let wants = |s: Scenario| only.is_empty() || only.contains(&s);
    let started = Instant::now();
    report.started = Some(Utc::now());
    let mut failed = false;
    match wirehook_testkit::db::connect(&ctx.admin_url, 1).await {
        Ok(conn) => {
            report.machine = Machine::probe(&conn).await.unwrap_or_default();
            conn.close().await.ok();
            if !report.machine.durable {
                eprintln!(
                    "bench: this server does not keep what it acknowledges (fsync, \
                     full_page_writes or synchronous_commit off): figures for iteration only"
                );
            }
        }
        Err(error) => {
            fail(report, BASELINES, "probing the server", &error.into());
            return true;
        }
    }
    let nproc = report.machine.nproc;

    let mut baselines = Baselines::default();
    if wants(Scenario::Baseline) {
        step("pgbench baselines");
        match baseline::run(ctx).await {
            Ok(b) => {
                report.commands.push(b.command.clone());
                for (name, value) in &b.values {
                    let label = format!("pgbench {name} ({} clients, {} s)", b.clients, b.secs);
                    report
                        .figures
                        .push(Figure::new(BASELINES, &label, *value, "/s"));
                }
                baselines = b;
            }
            Err(e) => failed |= fail(report, BASELINES, "pgbench baselines", &e),
        }
    }

    let mut drained: Option<Drained> = None;
    if wants(Scenario::Noop) {
        step("no-op apalis drain");
        match noop::run(ctx).await {
            Ok(d) => {
                report.figures.push(
                    Figure::new(
                        DELIVERY,
                        &format!(
                            "no-op apalis-postgres drain, 1 process × {} (baseline 2)",
                            d.concurrency
                        ),
                        d.rate,
                        "jobs/s",
                    )
                    .against(baselines.get(QUEUE_ONE_COMMIT)),
                );
                report.figures.push(Figure::new(
                    MEMORY,
                    "no-op apalis worker process peak RSS (floor)",
                    mib(d.vm_hwm_kib),
                    "MiB",
                ));
                drained = Some(d);
            }
            Err(e) => failed |= fail(report, DELIVERY, "no-op drain", &e),
        }
    }

    let mut unordered_2w = None;
    if wants(Scenario::Delivery) {
        for workers in [1, 2] {
            step(&format!("delivery, {workers} worker(s)"));
            match delivery::run(ctx, workers).await {
                Ok(run) => {
                    if workers == 2 {
                        unordered_2w = Some(run.rate);
                    }
                    delivery_figures(report, &run, &baselines, drained.as_ref(), nproc)
                }
                Err(e) => {
                    failed |= fail(report, DELIVERY, &format!("{workers} worker(s)"), &e);
                }
            }
        }
    }

    let mut ingest_rps = None;
    if wants(Scenario::Ingest) {
        step("inbound ingest");
        match ingest::run(ctx).await {
            Ok(run) => {
                ingest_rps = Some(run.rps);
                ingest_figures(report, &run, &baselines, drained.as_ref(), ctx, nproc);
            }
            Err(e) => failed |= fail(report, INGEST, "ingest", &e),
        }
    }

    if wants(Scenario::E2e) {
        let rate = ctx
            .scale
            .e2e_rate
            .or(ingest_rps.map(|r| (r / 2.0).max(E2E_TARGET_RATE)))
            .unwrap_or(DEFAULT_E2E_RATE)
            .max(1.0);
        step(&format!("end-to-end at {rate:.0} requests/s"));
        match e2e::run(ctx, rate).await {
            Ok(run) => e2e_figures(report, &run, &baselines, drained.as_ref(), nproc),
            Err(e) => failed |= fail(report, E2E, "end-to-end", &e),
        }
    }

    if wants(Scenario::Capacity) {
        let start = ingest_rps.map_or(DEFAULT_E2E_RATE, |r| r / 2.0);
        step(&format!("end-to-end capacity, from {start:.0} requests/s"));
        match e2e::capacity(ctx, start).await {
            Ok(found) => capacity_figures(report, &found, &baselines, ctx.scale.e2e.as_secs()),
            Err(e) => failed |= fail(report, E2E, "end-to-end capacity", &e),
        }
    }

    if wants(Scenario::Overload) {
        step("overload");
        match overload::run(ctx, ingest_rps).await {
            Ok(run) => overload_figures(report, &run, drained.as_ref(), nproc),
            Err(e) => failed |= fail(report, OVERLOAD, "overload", &e),
        }
    }

    if wants(Scenario::History) {
        step(&format!("history at {} rows", ctx.scale.history_rows));
        match history::run(ctx).await {
            Ok(run) => history_figures(report, &run, drained.as_ref(), nproc),
            Err(e) => failed |= fail(report, HISTORY, "history", &e),
        }
    }

    if wants(Scenario::Ordered) {
        step(&format!(
            "ordered delivery, {} keys × {} events, {} workers",
            ordered::KEYS,
            ordered::EVENTS_PER_KEY,
            ordered::WORKERS
        ));
        match ordered::run(ctx).await {
            Ok(run) => ordered_figures(report, &run, unordered_2w),
            Err(e) => failed |= fail(report, ORDERED, "ordered delivery", &e),
        }
    }

    if wants(Scenario::Migrate) {
        step(&format!(
            "partitioning {} events in place",
            ctx.scale.migrate_rows
        ));
        match partitioned::migration(ctx).await {
            Ok(run) => migration_figures(report, &run),
            Err(e) => failed |= fail(report, MIGRATE, "partitioning in place", &e),
        }
    }

    if wants(Scenario::Retention) {
        step(&format!(
            "retention, {} days × {} events",
            ctx.scale.retention_days, ctx.scale.retention_per_day
        ));
        match partitioned::retention(ctx).await {
            Ok(run) => retention_figures(report, &run),
            Err(e) => failed |= fail(report, RETENTION, "retention", &e),
        }
    }

    if wants(Scenario::Scale) {
        step(&format!(
            "scale: {:?} worker(s) × {:?} api(s), {} s per step",
            scale::WORKER_REPLICAS,
            scale::API_REPLICAS,
            ctx.scale.scale_step.as_secs()
        ));
        match scale::run(ctx).await {
            Ok(run) => scale_figures(report, &run),
            Err(e) => failed |= fail(report, SCALE, "scale", &e),
        }
    }

    report.secs = started.elapsed().as_secs_f64();
    failed
}

fn retention_figures(report: &mut Report, run: &RetentionRun) {
    let delete = Some((
        "old row-by-row DELETE of the same day",
        run.delete_secs * 1000.0,
    ));
    report.figures.push(
        Figure::new(
            RETENTION,
            "retention pass dropping one day",
            run.drop_secs * 1000.0,
            "ms",
        )
        .against(delete),
    );
    report.figures.push(
        Figure::new(
            RETENTION,
            "WAL written dropping one day",
            run.drop_wal as f64 / 1024.0,
            "KiB",
        )
        .against(Some((
            "old row-by-row DELETE of the same day",
            run.delete_wal as f64 / 1024.0,
        ))),
    );
    report.figures.push(
        Figure::new(RETENTION, "events the pass removed", run.dropped as f64, "")
            .target(Target::Exactly(run.day_events as f64)),
    );
    report.notes(RETENTION).text(format!(
        "{} days × {} events (half outbound, one attempt each) filled and vacuumed in {:.1} s. \
         Oldest day: {} events. Old purge (DELETE … LIMIT 1000 in a loop with the attempts, in \
         one transaction rolled back): {:.2} s, {:.1} MiB of WAL. Retention pass (drops the \
         day's two partitions): {:.3} s, {:.1} KiB of WAL. Both after a CHECKPOINT. The DELETE \
         figures leave out its 1,000-event commits' fsyncs and the vacuum of the dead rows.",
        run.days,
        run.per_day,
        run.fill_secs,
        run.day_events,
        run.delete_secs,
        run.delete_wal as f64 / 1_048_576.0,
        run.drop_secs,
        run.drop_wal as f64 / 1024.0,
    ));
}

fn migration_figures(report: &mut Report, run: &MigrationRun) {
    report.figures.push(
        Figure::new(
            MIGRATE,
            &format!(
                "longest stall of a reader while {} events are partitioned",
                run.rows
            ),
            run.longest_probe_ms,
            "ms",
        )
        .target(Target::Below(1000.0)),
    );
    report.figures.push(
        Figure::new(
            MIGRATE,
            "rows, ids, message ids and history total unchanged",
            if run.intact { 1.0 } else { 0.0 },
            "",
        )
        .target(Target::Exactly(1.0)),
    );
    report.notes(MIGRATE).text(format!(
        "{} events (and an attempt per outbound event) written by the schema before \
         partitioning in {:.1} s, then `migrate` in {:.2} s while a reader queried \
         webhook_events every 5 ms ({} probes); its longest wait is the downtime (the scan that \
         proves the legacy bound runs before the exclusive lock, while writers go on).",
        run.rows, run.fill_secs, run.migrate_secs, run.probes,
    ));
}

fn scale_figures(report: &mut Report, run: &ScaleRun) {
    for s in &run.steps {
        let who = format!("{} worker(s), {} api(s)", s.workers, s.apis);
        report.figures.push(Figure::new(
            SCALE,
            &format!("deliveries/s, {who}"),
            s.deliveries,
            "deliveries/s",
        ));
        report.figures.push(Figure::new(
            SCALE,
            &format!("ingest/s, {who}"),
            s.ingest,
            "requests/s",
        ));
        report.figures.push(Figure::new(
            SCALE,
            &format!("primary CPU per delivery, {who}"),
            s.primary_ms_per_delivery,
            "ms",
        ));
    }
    report.notes(SCALE).text(run.primary.clone());
    report.notes(SCALE).text(scale::table(run));
}

fn ordered_figures(report: &mut Report, run: &OrderedRun, unordered_2w: Option<f64>) {
    report.figures.push(
        Figure::new(
            ORDERED,
            &format!("ordered deliveries/s, {} workers", ordered::WORKERS),
            run.rate,
            "deliveries/s",
        )
        .against(unordered_2w.map(|r| ("unordered delivery, 2 workers", r)))
        .target(Target::RatioAtLeast(0.5)),
    );
    report.figures.push(
        Figure::new(
            ORDERED,
            "ordered events delivered",
            run.delivered as f64,
            "",
        )
        .target(Target::Exactly(run.events as f64)),
    );
    report.figures.push(
        Figure::new(
            ORDERED,
            "events first arriving out of order",
            run.out_of_order as f64,
            "",
        )
        .target(Target::Exactly(0.0)),
    );
    report.figures.push(Figure::new(
        ORDERED,
        "latency added per event (previous of its key to it), p50",
        crate::stats::ms(run.added.p50),
        "ms",
    ));
    report.figures.push(Figure::new(
        ORDERED,
        "latency added per event (previous of its key to it), p99",
        crate::stats::ms(run.added.p99),
        "ms",
    ));
    report.notes(ORDERED).text(format!(
        "{} events ({} keys × {}) to one configuration ordered on /callId, written through the \
         group commit before the workers start: {:.2} s first to last arrival, {} duplicates, \
         {} delivered. The added latency is, per event after the first of its key, the time \
         from its predecessor's first arrival to its own ({} gaps); in a backlog drain it is \
         mostly the released event's wait behind the other keys' queued jobs.",
        run.events,
        ordered::KEYS,
        ordered::EVENTS_PER_KEY,
        run.secs,
        run.duplicates,
        run.delivered,
        run.added.n
    ));
}

/// The CPU one event cost in a scenario, by part (see [`CpuSplit::per_event_ms`]).
fn cpu_figures(
    report: &mut Report,
    scenario: &str,
    cpu: &CpuSplit,
    events: u64,
    total_target: Option<Target>,
) {
    for (part, per_event) in cpu.per_event_ms(events) {
        let mut figure = Figure::new(
            EFFICIENCY,
            &format!("CPU per event, {scenario}: {part}"),
            per_event,
            "ms",
        );
        if let Some(target) = total_target.filter(|_| part == "total") {
            figure = figure.target(target);
        }
        report.figures.push(figure);
    }
}

fn capacity_figures(report: &mut Report, found: &Capacity, baselines: &Baselines, step_secs: u64) {
    let tried: Vec<String> = found
        .steps
        .iter()
        .map(|s| {
            format!(
                "{}/s: p99 {:.1} ms, {} lost, {} refused ({})",
                number0(s.rate),
                ms(s.p99),
                s.lost,
                s.errors,
                if s.passed() { "within" } else { "beyond" }
            )
        })
        .collect();
    report.notes(E2E).text(format!(
        "Capacity search ({step_secs} s per rate): {}.",
        tried.join("; ")
    ));
    report.figures.push(
        Figure::new(
            E2E,
            &format!(
                "end-to-end capacity (p99 < {} ms, nothing lost)",
                e2e::CAPACITY_P99.as_millis()
            ),
            found.rate.unwrap_or(0.0),
            "requests/s",
        )
        .against(baselines.get(TPCB))
        .target(Target::RatioAtLeast(1.0)),
    );
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

/// Records a failed scenario; returns true.
fn fail(report: &mut Report, section: &str, what: &str, error: &BoxError) -> bool {
    eprintln!("!!! {what} failed: {error}");
    report
        .notes(section)
        .text(format!("**{what} FAILED:** {error}"));
    true
}

fn rss_figure(name: &str, kib: u64, drained: Option<&Drained>) -> Figure {
    Figure::new(MEMORY, name, mib(kib), "MiB")
        .against(drained.map(|d| ("no-op apalis worker", mib(d.vm_hwm_kib))))
        .target(Target::Below(RSS_TARGET_MIB))
}

fn delivery_figures(
    report: &mut Report,
    run: &DeliveryRun,
    baselines: &Baselines,
    drained: Option<&Drained>,
    nproc: usize,
) {
    let w = run.workers;
    cpu_figures(
        report,
        &format!("delivery, {w} worker(s)"),
        &run.cpu,
        run.delivered,
        None,
    );
    let mut rate = Figure::new(
        DELIVERY,
        &format!("deliveries/s, {w} worker(s)"),
        run.rate,
        "deliveries/s",
    )
    .against(baselines.get(QUEUE_ONE_COMMIT));
    if w == 2 {
        rate = rate
            .target(Target::AtLeast(5000.0))
            .target(Target::RatioAtLeast(1.0));
    }
    report.figures.push(rate);
    report.figures.push(
        Figure::new(
            DELIVERY,
            &format!("deliveries/s, {w} worker(s), vs no-op drain"),
            run.rate,
            "deliveries/s",
        )
        .against(drained.map(|d| ("no-op apalis drain", d.rate))),
    );
    report.figures.push(
        Figure::new(
            DELIVERY,
            &format!("events delivered, {w} worker(s)"),
            run.delivered as f64,
            "",
        )
        .target(Target::Exactly(run.events as f64)),
    );
    report.figures.push(
        Figure::new(
            DELIVERY,
            &format!("duplicates, {w} worker(s)"),
            run.duplicates as f64,
            "",
        )
        .target(Target::Exactly(0.0)),
    );
    report.figures.push(
        Figure::new(
            DELIVERY,
            &format!("bad signatures, {w} worker(s)"),
            run.bad_signatures as f64,
            "",
        )
        .target(Target::Exactly(0.0)),
    );
    if w == 1 {
        report.figures.push(
            Figure::new(
                DELIVERY,
                "enqueue through queue::enqueue (1,000 per transaction)",
                run.enqueue_rate,
                "events/s",
            )
            .against(baselines.get(ENQUEUE_BATCH100)),
        );
    }
    report.figures.push(rss_figure(
        &format!("worker peak RSS, delivery with {w} worker(s)"),
        run.worker_peak_kib,
        drained,
    ));
    report.notes(DELIVERY).text(format!(
        "{w} worker(s): {} events, {} distinct received in {:.2} s (first to last arrival), \
         {} duplicates, {} bad signatures; database afterwards: {}. {}. Database work {}.",
        run.events,
        run.distinct,
        run.secs,
        run.duplicates,
        run.bad_signatures,
        run.statuses,
        run.cpu.describe(nproc),
        run.work
    ));
    report.notes(DELIVERY).text(run.tables.clone());
}

fn ingest_figures(
    report: &mut Report,
    run: &IngestRun,
    baselines: &Baselines,
    drained: Option<&Drained>,
    ctx: &Context,
    nproc: usize,
) {
    cpu_figures(
        report,
        "ingest (per accepted request)",
        &run.cpu,
        run.requests.saturating_sub(run.errors),
        None,
    );
    let tpcb_latency = baselines
        .tpcb_latency_ms()
        .map(|v| ("TPC-B mean transaction latency", v));
    report.figures.push(
        Figure::new(
            INGEST,
            &format!(
                "requests/s, {} connections, {} s",
                ctx.scale.connections,
                ctx.scale.ingest.as_secs()
            ),
            run.rps,
            "requests/s",
        )
        .against(baselines.get(TPCB))
        .target(Target::RatioAtLeast(0.8)),
    );
    report
        .figures
        .push(Figure::new(INGEST, "latency p50", ms(run.latency.p50), "ms").against(tpcb_latency));
    report.figures.push(
        Figure::new(INGEST, "latency p99", ms(run.latency.p99), "ms")
            .against(tpcb_latency)
            .target(Target::Below(50.0)),
    );
    report
        .figures
        .push(Figure::new(INGEST, "errors", run.errors as f64, "").target(Target::Exactly(0.0)));
    report.figures.push(rss_figure(
        "api peak RSS, ingest",
        run.api_peak_kib,
        drained,
    ));
    let mut text = format!(
        "{} requests in {:.1} s, {} errors; latency max {:.1} ms. Database afterwards (1 s \
         warm-up included): {} inbound `processed`, {} outbound `pending` (no worker ran). {}. \
         Database work {}.",
        run.requests,
        run.secs,
        run.errors,
        ms(run.latency.max),
        run.inbound_processed,
        run.outbound_pending,
        run.cpu.describe(nproc),
        run.work
    );
    if !run.error_examples.is_empty() {
        text.push_str(&format!(" Errors, e.g.: {}", run.error_examples.join("; ")));
    }
    report.notes(INGEST).text(text);
}

fn e2e_figures(
    report: &mut Report,
    run: &E2eRun,
    baselines: &Baselines,
    drained: Option<&Drained>,
    nproc: usize,
) {
    cpu_figures(
        report,
        &format!("end-to-end at {} req/s", number0(run.rate)),
        &run.cpu,
        run.requests.saturating_sub(run.errors + run.lost),
        Some(Target::AtMost(E2E_CPU_TARGET_MS)),
    );
    let tpcb_latency = baselines
        .tpcb_latency_ms()
        .map(|v| ("TPC-B mean transaction latency", v));
    let name = |what: &str| {
        format!(
            "{what} ({} req/s, {} worker(s))",
            number0(run.rate),
            run.workers
        )
    };
    report.figures.push(
        Figure::new(
            E2E,
            &name("answer → delivery p50"),
            ms(run.latency.p50),
            "ms",
        )
        .against(tpcb_latency),
    );
    report.figures.push(
        Figure::new(
            E2E,
            &name("answer → delivery p99"),
            ms(run.latency.p99),
            "ms",
        )
        .against(tpcb_latency)
        .target(Target::Below(100.0)),
    );
    report.figures.push(
        Figure::new(
            E2E,
            &name("answer → delivery max"),
            ms(run.latency.max),
            "ms",
        )
        .against(tpcb_latency),
    );
    report.figures.push(
        Figure::new(E2E, "requests not accepted", run.errors as f64, "")
            .target(Target::Exactly(0.0)),
    );
    report.figures.push(
        Figure::new(E2E, "accepted but never delivered", run.lost as f64, "")
            .target(Target::Exactly(0.0)),
    );
    report.figures.push(rss_figure(
        "worker peak RSS, end-to-end",
        run.worker_peak_kib,
        drained,
    ));
    report.figures.push(rss_figure(
        "api peak RSS, end-to-end",
        run.api_peak_kib,
        drained,
    ));
    report.notes(E2E).text(format!(
        "{} requests offered at {:.0}/s; ingest latency during the run p50 {:.1} ms, p99 {:.1} ms; \
         {} deliveries arrived before the provider had read the api's answer (counted as 0 ms). \
         Where the time goes (from apalis.jobs): job due → claimed by a worker p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; claimed → arrived at the receiver p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms. {}.",
        run.requests,
        run.rate,
        ms(run.ingest_latency.p50),
        ms(run.ingest_latency.p99),
        run.before_answer,
        ms(run.queue_wait.p50),
        ms(run.queue_wait.p99),
        ms(run.queue_wait.max),
        ms(run.claim_to_arrival.p50),
        ms(run.claim_to_arrival.p99),
        ms(run.claim_to_arrival.max),
        run.cpu.describe(nproc)
    ));
}

fn overload_figures(
    report: &mut Report,
    run: &OverloadRun,
    drained: Option<&Drained>,
    nproc: usize,
) {
    for phase in &run.phases {
        let load = phase.load.describe();
        let name = |what: &str| format!("{what}, {load}");
        let exactly_zero = |what: &str, value: u64| {
            Figure::new(OVERLOAD, &name(what), value as f64, "").target(Target::Exactly(0.0))
        };
        report.figures.push(
            Figure::new(
                OVERLOAD,
                &name("accepted requests/s"),
                phase.accepted_rps(),
                "requests/s",
            )
            .against(Some(("ingest capacity", run.capacity))),
        );
        report.figures.push(
            Figure::new(
                OVERLOAD,
                &name("accepted latency p99"),
                ms(phase.latency.p99),
                "ms",
            )
            .target(Target::Below(100.0)),
        );
        report.figures.push(Figure::new(
            OVERLOAD,
            &name("refused 503 overloaded with Retry-After"),
            phase.overloaded as f64,
            "",
        ));
        report
            .figures
            .push(exactly_zero("client timeouts", phase.timeouts));
        report
            .figures
            .push(exactly_zero("other errors", phase.other_errors));
        report
            .figures
            .push(exactly_zero("accepted but lost", phase.fates.lost));
        report.figures.push(exactly_zero(
            "accepted, not delivered after the queue drained",
            phase.fates.pending + phase.fates.failed,
        ));
        report.figures.push(rss_figure(
            &format!("api peak RSS, overload: {load}"),
            phase.api_peak_kib,
            drained,
        ));
        let mut text = format!(
            "**{load}.** {} requests in {:.1} s ({:.0} answered/s): {} accepted ({:.0}/s), {} \
             refused 503 `overloaded`, {} client timeouts, {} other errors. Accepted latency \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; refusals p50 {:.1} ms, p99 {:.1} ms. \
             Queue drained {:.1} s after the load; accepted events: {} delivered, {} still \
             pending, {} failed, {} lost. Peak RSS: api {:.1} MiB, worker {:.1} MiB. {}. \
             Generator: requests written at {:.0}/s; waited in the generator before the write \
             (for a free connection, or to reconnect after a refusal closed one) p50 {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms.",
            phase.requests,
            phase.secs,
            phase.answered_rps(),
            phase.accepted,
            phase.accepted_rps(),
            phase.overloaded,
            phase.timeouts,
            phase.other_errors,
            ms(phase.latency.p50),
            ms(phase.latency.p99),
            ms(phase.latency.max),
            ms(phase.refusal_latency.p50),
            ms(phase.refusal_latency.p99),
            phase.drain_secs,
            phase.fates.delivered,
            phase.fates.pending,
            phase.fates.failed,
            phase.fates.lost,
            mib(phase.api_peak_kib),
            mib(phase.worker_peak_kib),
            phase.cpu.describe(nproc),
            phase.written_rps,
            ms(phase.lag.p50),
            ms(phase.lag.p99),
            ms(phase.lag.max),
        );
        if !phase.error_examples.is_empty() {
            text.push_str(&format!(
                " Errors, e.g.: {}",
                phase.error_examples.join("; ")
            ));
        }
        report.notes(OVERLOAD).text(text);
    }
    report.notes(OVERLOAD).text(format!(
        "Ingest capacity {:.0} requests/s, from {}.",
        run.capacity, run.capacity_source
    ));
}

fn history_figures(report: &mut Report, run: &HistoryRun, drained: Option<&Drained>, nproc: usize) {
    let mut seq_scans = 0;
    for q in &run.queries {
        let db = Some(("same SQL run directly, p50", q.db_ms));
        report.figures.push(
            Figure::new(
                HISTORY,
                &format!("{} p50", q.query.name),
                ms(q.latency.p50),
                "ms",
            )
            .against(db),
        );
        report.figures.push(
            Figure::new(
                HISTORY,
                &format!("{} p95", q.query.name),
                ms(q.latency.p95),
                "ms",
            )
            .against(db)
            .target(Target::Below(50.0)),
        );
        if q.errors > 0 {
            report.figures.push(
                Figure::new(
                    HISTORY,
                    &format!("{} errors", q.query.name),
                    q.errors as f64,
                    "",
                )
                .target(Target::Exactly(0.0)),
            );
        }
        if !q.uses_index {
            seq_scans += 1;
        }
    }
    report.figures.push(
        Figure::new(
            HISTORY,
            "queries reading webhook_events by sequential scan",
            seq_scans as f64,
            "",
        )
        .target(Target::Exactly(0.0)),
    );
    report.figures.push(rss_figure(
        "api peak RSS, history",
        run.api_peak_kib,
        drained,
    ));
    let notes = report.notes(HISTORY);
    notes.text(format!(
        "{} event rows generated in {:.1} s (one INSERT … SELECT generate_series, plus one \
         attempt row per tenth outbound event), VACUUM ANALYZE {:.1} s. Samples per query: {} \
         (sequential requests over one keep-alive connection). The SQL below is what the api \
         runs for each request (sea-orm's `count()` wraps the same filter in a subquery). \
         While sampling: {}.",
        run.rows,
        run.generate_secs,
        run.vacuum_secs,
        run.queries.first().map_or(0, |q| q.latency.n),
        run.cpu.describe(nproc),
    ));
    for q in &run.queries {
        notes.code(
            &format!(
                "**{}** — `GET {}`: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; SQL run directly {:.1} ms; {}",
                q.query.name,
                q.query.path,
                ms(q.latency.p50),
                ms(q.latency.p95),
                ms(q.latency.p99),
                q.db_ms,
                if q.uses_index {
                    "index scans only"
                } else {
                    "SEQUENTIAL SCAN"
                }
            ),
            &q.explain,
        );
    }
}

fn number0(v: f64) -> String {
    super::report::number(v.round())
}
