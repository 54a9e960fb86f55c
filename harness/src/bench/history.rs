//! Scenario 4, history queries at 1,000,000 event rows: generated with one
//! `INSERT … SELECT generate_series` (half inbound, half outbound over 4 configurations, spread
//! over 29 days, one attempt row for every tenth outbound event), then `VACUUM ANALYZE`, then
//! each query many times over HTTP against the real api, and `EXPLAIN (ANALYZE, BUFFERS)` of
//! the SQL the api runs for it.
//!
//! The SQL is written out here as the api produces it: `total` from the per-day counts
//! (`webhook_event_counts` plus unfolded deltas; a date range's partial days are counted on the
//! events, see `api/src/history.rs`), then the page ordered by `created_at DESC, id DESC`. The same
//! SQL run directly over one connection is the baseline of each query's HTTP latency (EXPLAIN
//! ANALYZE's own timing inflates row-heavy plans, so its times are not used as the baseline).

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use super::machine::{CpuMeter, CpuSplit, backend_pids};
use super::stage::Stage;
use super::{BenchResult, Context};
use crate::stats::Percentiles;

/// Requests before a query's samples are taken.
const WARM_UP_REQUESTS: usize = 3;
/// Longest a query is sampled, whatever the sample count.
const MAX_QUERY_TIME: Duration = Duration::from_secs(40);
/// Direct runs of a query's SQL for its database-only time.
const DIRECT_RUNS: usize = 11;
/// Event types of the generated rows.
const EVENT_TYPES: &str = "ARRAY['call.completed','call.created','call.answered','call.ringing',\
                           'conversation.started','conversation.completed']";

/// One history query: the HTTP request and the SQL behind it.
#[derive(Debug, Clone)]
pub struct Query {
    /// Short name, e.g. `page 500`.
    pub name: String,
    /// Path and query string; `{id}` is replaced by a sampled event id.
    pub path: String,
    /// The statements the api runs (with the same `{id}` placeholder).
    pub sql: Vec<String>,
}

/// What one query measured.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The query.
    pub query: Query,
    /// Latency over HTTP.
    pub latency: Percentiles,
    /// Requests that did not answer 200.
    pub errors: u64,
    /// The same statements run directly over one connection (median of a few runs), ms: what
    /// PostgreSQL alone needs for the request.
    pub db_ms: f64,
    /// The plans.
    pub explain: String,
    /// Whether every plan reads `webhook_events` through an index (no sequential scan).
    pub uses_index: bool,
}

/// What the history scenario measured.
#[derive(Debug, Clone)]
pub struct HistoryRun {
    /// Event rows generated.
    pub rows: u64,
    /// Time to generate them (and the attempts).
    pub generate_secs: f64,
    /// Time of `VACUUM ANALYZE`.
    pub vacuum_secs: f64,
    /// Every query.
    pub queries: Vec<QueryResult>,
    /// The api's peak RSS, KiB.
    pub api_peak_kib: u64,
    /// Where the CPU went while the queries were sampled.
    pub cpu: CpuSplit,
}

/// Runs the history scenario.
pub async fn run(ctx: &Context) -> BenchResult<HistoryRun> {
    let rows = ctx.scale.history_rows.max(100);
    let mut stage = Stage::new(ctx, "history", 4).await?;
    let conn = stage.db.connect(2).await?;
    let configs: Vec<String> = stage.configs.iter().map(|c| c.id.to_string()).collect();

    let started = Instant::now();
    generate(&conn, rows, &configs).await?;
    let generate_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    conn.execute_unprepared("VACUUM ANALYZE webhook_events, webhook_attempts")
        .await?;
    let vacuum_secs = started.elapsed().as_secs_f64();

    let labels: Vec<(String, u32)> = stage
        .api
        .pid()
        .map(|p| ("api".to_owned(), p))
        .into_iter()
        .collect();
    let meter = CpuMeter::start(&labels);
    let mut queries = Vec::new();
    for query in catalog() {
        queries.push(measure(ctx, &stage, &conn, query, rows).await?);
    }
    let cpu = meter.stop(&backend_pids(&conn).await?);
    let api_peak_kib = stage.api.peak_rss_kib().unwrap_or(0);
    conn.close().await.ok();
    stage.finish().await?;
    Ok(HistoryRun {
        rows,
        generate_secs,
        vacuum_secs,
        queries,
        api_peak_kib,
        cpu,
    })
}

/// The five queries.
pub fn catalog() -> Vec<Query> {
    const COLUMNS: &str = "*";
    // The total of whole days, as `history::total` sums it.
    let counted = |filter: &str| {
        format!(
            "SELECT COALESCE(sum(n), 0)::bigint AS n FROM (\
             SELECT n FROM webhook_event_counts{filter} \
             UNION ALL SELECT n FROM webhook_event_count_deltas{filter}) AS c"
        )
    };
    let page = |filter: &str, total: String, offset: u64| {
        vec![
            total,
            format!(
                "SELECT {COLUMNS} FROM webhook_events{filter} ORDER BY created_at DESC, id DESC \
                 LIMIT 20 OFFSET {offset}"
            ),
        ]
    };
    let now = Utc::now();
    let from = (now - chrono::Duration::days(3)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let to = (now - chrono::Duration::days(2)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let filtered = " WHERE direction = 'outbound' AND status = 'delivered' \
                    AND event_type = 'call.completed'";
    // The api bounds the id by the same days, which prunes the day partitions.
    let (lo, hi) = (
        wirehook_core::partitions::first_id_at(now - chrono::Duration::days(3)),
        wirehook_core::partitions::end_id((now - chrono::Duration::days(2)).date_naive()),
    );
    let legacy = wirehook_core::partitions::LEGACY_ID_BOUND;
    let dated = format!(
        " WHERE created_at >= '{from}' AND (id < {legacy} OR id >= {lo}) \
         AND created_at <= '{to}' AND id < {hi}"
    );
    vec![
        Query {
            name: "first page, unfiltered".into(),
            path: "/api/webhooks/events?page=1&limit=20".into(),
            sql: page("", counted(""), 0),
        },
        Query {
            name: "first page, direction+status+eventType".into(),
            path:
                "/api/webhooks/events?direction=outbound&status=delivered&eventType=call.completed"
                    .into(),
            sql: page(filtered, counted(filtered), 0),
        },
        Query {
            name: "date range (1 day)".into(),
            path: format!("/api/webhooks/events?fromDate={from}&toDate={to}"),
            // 24 hours not starting at midnight cover no whole day: counted on the events.
            sql: page(
                &dated,
                format!("SELECT count(*) FROM webhook_events{dated}"),
                0,
            ),
        },
        Query {
            name: "page 500".into(),
            path: "/api/webhooks/events?page=500&limit=20".into(),
            sql: page("", counted(""), 499 * 20),
        },
        Query {
            name: "details by id".into(),
            path: "/api/webhooks/events/{id}".into(),
            sql: vec![
                "SELECT * FROM webhook_events WHERE id = {id}".into(),
                "SELECT * FROM webhook_configs WHERE id = \
                 (SELECT webhook_config_id FROM webhook_events WHERE id = {id})"
                    .into(),
                "SELECT * FROM webhook_attempts WHERE event_id = {id} ORDER BY attempt, id".into(),
            ],
        },
    ]
}

/// Inserts `rows` events in one statement (each with the id of its creation day, in that day's
/// partition), then one attempt for every tenth outbound event.
async fn generate(conn: &DatabaseConnection, rows: u64, configs: &[String]) -> BenchResult<()> {
    let step_secs = 29.0 * 86_400.0 / rows as f64;
    let configs = configs.join(",");
    let sql = format!(
        "SELECT setseed(0.42); \
         SELECT webhook_history_ensure_days((now() AT TIME ZONE 'UTC')::date - 30, \
                                            (now() AT TIME ZONE 'UTC')::date); \
         INSERT INTO webhook_events (id, message_id, direction, source, event_type, payload, \
             status, attempts, webhook_config_id, client_ip, created_at, updated_at) \
         SELECT webhook_event_id(t), 'msg_bench' || lpad(g::text, 10, '0'), \
                CASE WHEN g % 2 = 0 THEN 'outbound' ELSE 'inbound' END, \
                (ARRAY['signalwire','elevenlabs','11wire'])[1 + g % 3], \
                ({EVENT_TYPES})[1 + floor(random() * 6)::int], \
                jsonb_build_object('callId', 'call-' || g, 'status', 'completed', \
                    'duration', g % 600, 'campaignId', 'campaign-' || (g % 50)), \
                CASE WHEN g % 2 = 0 \
                     THEN (ARRAY['delivered','delivered','delivered','delivered','delivered', \
                                 'failed','pending','cancelled'])[1 + floor(random() * 8)::int] \
                     ELSE (ARRAY['processed','processed','processed','ignored','rejected']) \
                          [1 + floor(random() * 5)::int] END, \
                CASE WHEN g % 2 = 0 THEN 1 ELSE 0 END, \
                CASE WHEN g % 2 = 0 THEN (ARRAY[{configs}]::bigint[])[1 + (g / 2) % 4] END, \
                CASE WHEN g % 2 = 1 THEN '127.0.0.1' END, \
                t, t \
         FROM generate_series(1, {rows}) AS g, \
              LATERAL (SELECT now() - make_interval(secs => ({rows} - g) * {step_secs})) AS c(t); \
         INSERT INTO webhook_attempts (event_id, attempt, request_headers, status_code, \
             response_headers, response_body, duration_ms, created_at) \
         SELECT id, 1, '{{\"content-type\": \"application/json\"}}', 200, \
                '{{\"content-type\": \"text/plain\"}}', 'ok', 12, created_at \
         FROM webhook_events WHERE direction = 'outbound' AND id % 10 = 0;"
    );
    conn.execute_unprepared(&sql).await?;
    Ok(())
}

async fn measure(
    ctx: &Context,
    stage: &Stage,
    conn: &DatabaseConnection,
    query: Query,
    rows: u64,
) -> BenchResult<QueryResult> {
    // Outbound events with an attempt row, spread over the table (ids carry their day, so
    // they are sampled rather than computed).
    let ids: Vec<i64> = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!(
                "SELECT event_id FROM webhook_attempts TABLESAMPLE SYSTEM (10) LIMIT {}",
                rows.clamp(1, 1_000)
            ),
        ))
        .await?
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0))
        .collect::<Result<_, _>>()?;
    let id_of = |i: usize| {
        ids.get((i * 7_919) % ids.len().max(1))
            .copied()
            .unwrap_or(0)
    };
    let path_of = |i: usize| query.path.replace("{id}", &id_of(i).to_string());
    for i in 0..WARM_UP_REQUESTS {
        stage.client.get(&path_of(i)).await?;
    }
    let mut latencies = Vec::with_capacity(ctx.scale.history_samples);
    let mut errors = 0;
    let started = Instant::now();
    for i in 0..ctx.scale.history_samples {
        if started.elapsed() > MAX_QUERY_TIME {
            break;
        }
        let sent = Instant::now();
        let (status, _) = stage.client.get(&path_of(WARM_UP_REQUESTS + i)).await?;
        latencies.push(sent.elapsed());
        if status != 200 {
            errors += 1;
        }
    }
    let mut direct = Vec::with_capacity(DIRECT_RUNS);
    for i in 0..DIRECT_RUNS {
        let started = Instant::now();
        for sql in &query.sql {
            let sql = sql.replace("{id}", &id_of(i).to_string());
            conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
                .await?;
        }
        direct.push(started.elapsed());
    }
    let db_ms = crate::stats::ms(Percentiles::of(&direct).p50);
    let mut explain = String::new();
    let mut uses_index = true;
    for sql in &query.sql {
        let sql = sql.replace("{id}", &id_of(0).to_string());
        let plan = explain_analyze(conn, &sql).await?;
        uses_index &= !reads_events_sequentially(&plan);
        explain.push_str(&format!("{sql}\n{plan}\n\n"));
    }
    Ok(QueryResult {
        query,
        latency: Percentiles::of(&latencies),
        errors,
        db_ms,
        explain,
        uses_index,
    })
}

/// Whether a plan reads events with a sequential scan that finds or filters out rows (an empty
/// day partition ahead of today may be scanned sequentially: it costs nothing).
fn reads_events_sequentially(plan: &str) -> bool {
    let lines: Vec<&str> = plan.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        if !line.contains("Seq Scan on webhook_events") {
            return false;
        }
        let empty = line.contains("rows=0 loops") || line.contains("never executed");
        let filtered = lines[i + 1..]
            .iter()
            .take_while(|l| !l.contains("->"))
            .any(|l| l.contains("Rows Removed by Filter"));
        !empty || filtered
    })
}

async fn explain_analyze(conn: &DatabaseConnection, sql: &str) -> BenchResult<String> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"),
        ))
        .await?;
    let lines = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines.join("\n"))
}
