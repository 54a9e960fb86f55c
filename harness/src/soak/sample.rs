//! One reading of the running system every sample interval: what each resource holds now and
//! what the interval cost. [`Sampler`] takes them (from `/proc`, the database and the
//! receiver's log of answers); [`Resource`] names what is plotted and judged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use super::trend::Floor;
use crate::bench::machine::process_cpu_secs;
use crate::stats::nearest_rank;

/// One reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the steady load started.
    pub t: f64,
    /// The api's resident memory, MiB.
    pub api_rss: f64,
    /// Each worker's resident memory, MiB.
    pub worker_rss: Vec<f64>,
    /// Rows of `apalis.jobs`.
    pub jobs_rows: f64,
    /// `pg_total_relation_size('apalis.jobs')`, MiB.
    pub jobs_mib: f64,
    /// Rows of `webhook_events`.
    pub events_rows: f64,
    /// `pg_total_relation_size` of `webhook_events`' partitions, summed, MiB.
    pub events_mib: f64,
    /// `pg_total_relation_size` of `webhook_attempts`' partitions, summed, MiB.
    pub attempts_mib: f64,
    /// Delivery jobs pending.
    pub pending_jobs: f64,
    /// Age of the oldest due pending job, seconds.
    pub lag: f64,
    /// Source events accepted during the interval.
    pub accepted: u64,
    /// Deliveries answered 2xx during the interval.
    pub delivered: u64,
    /// Event created → its 2xx at the receiver, p99 over the interval, ms (`None` without
    /// deliveries).
    pub delivery_p99_ms: Option<f64>,
    /// CPU of api, workers and PostgreSQL over the interval per delivery, ms.
    pub cpu_ms_per_delivery: Option<f64>,
    /// The same split: api, workers, PostgreSQL CPU-seconds over the interval.
    pub cpu_secs: [f64; 3],
    /// Events deleted so far (`n_tup_del` of `webhook_events`: retention).
    pub events_deleted: f64,
    /// Job rows deleted so far (`n_tup_del` of `apalis.jobs`).
    pub jobs_deleted: f64,
}

impl Sample {
    /// The largest worker's resident memory, MiB.
    pub fn worker_rss_max(&self) -> f64 {
        self.worker_rss.iter().copied().fold(0.0, f64::max)
    }
}

/// A plotted, possibly judged, quantity of the samples.
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// Its name in the table and plot.
    pub name: &'static str,
    /// Its unit.
    pub unit: &'static str,
    /// Whether it must stay flat (else it is shown only).
    pub gated: bool,
    /// Its absolute allowance (see [`super::trend`]).
    pub floor: Floor,
    /// Its value in a sample (`None` when the sample has none).
    pub value: fn(&Sample) -> Option<f64>,
}

/// What a soak run plots and judges. The worker's memory is judged per replica (see
/// [`worker_rss_series`]); here the larger one is plotted.
pub const RESOURCES: &[Resource] = &[
    Resource {
        name: "api RSS",
        unit: "MiB",
        gated: true,
        floor: Floor(8.0),
        value: |s| Some(s.api_rss),
    },
    Resource {
        name: "worker RSS (largest)",
        unit: "MiB",
        gated: false,
        floor: Floor(8.0),
        value: |s| Some(s.worker_rss_max()),
    },
    Resource {
        name: "apalis.jobs rows",
        unit: "rows",
        gated: true,
        floor: Floor(2000.0),
        value: |s| Some(s.jobs_rows),
    },
    Resource {
        name: "apalis.jobs size",
        unit: "MiB",
        gated: true,
        floor: Floor(4.0),
        value: |s| Some(s.jobs_mib),
    },
    Resource {
        name: "webhook_events rows",
        unit: "rows",
        gated: true,
        floor: Floor(2000.0),
        value: |s| Some(s.events_rows),
    },
    Resource {
        name: "webhook_events size",
        unit: "MiB",
        gated: true,
        floor: Floor(4.0),
        value: |s| Some(s.events_mib),
    },
    Resource {
        name: "webhook_attempts size",
        unit: "MiB",
        gated: true,
        floor: Floor(4.0),
        value: |s| Some(s.attempts_mib),
    },
    Resource {
        name: "queue lag",
        unit: "s",
        gated: true,
        floor: Floor(10.0),
        value: |s| Some(s.lag),
    },
    Resource {
        name: "delivery p99",
        unit: "ms",
        gated: false,
        floor: Floor(0.0),
        value: |s| s.delivery_p99_ms,
    },
    Resource {
        name: "CPU per delivery",
        unit: "ms",
        gated: false,
        floor: Floor(0.0),
        value: |s| s.cpu_ms_per_delivery,
    },
];

/// The floor of a worker's memory, as of the api's.
pub const WORKER_RSS_FLOOR: Floor = Floor(8.0);

/// `(t, value)` of `resource` over `samples`, skipping samples without a value.
pub fn series(samples: &[Sample], resource: &Resource) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| (resource.value)(s).map(|v| (s.t, v)))
        .collect()
}

/// `(t, MiB)` of worker `i`'s memory.
pub fn worker_rss_series(samples: &[Sample], i: usize) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| s.worker_rss.get(i).map(|v| (s.t, *v)))
        .collect()
}

/// The receiver's log of 2xx answers (`webhook-id`, when), drained at each sample.
pub type Answers = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// The processes whose memory and CPU a sample reads.
#[derive(Debug, Clone)]
pub struct Pids {
    pub api: u32,
    pub workers: Vec<u32>,
    /// PostgreSQL's postmaster: its CPU, its reaped children's and its live children's.
    pub postmaster: u32,
}

/// Takes [`Sample`]s.
pub struct Sampler {
    db: DatabaseConnection,
    pids: Pids,
    answers: Answers,
    started: Instant,
    cpu: [f64; 3],
}

impl Sampler {
    /// A sampler whose clock starts now (CPU counted from now on).
    pub fn new(db: DatabaseConnection, pids: Pids, answers: Answers) -> Self {
        let mut sampler = Self {
            db,
            pids,
            answers,
            started: Instant::now(),
            cpu: [0.0; 3],
        };
        sampler.cpu = sampler.cpu_now();
        lock(&sampler.answers).clear();
        sampler
    }

    /// Reads everything now; `accepted` is how many source events the interval accepted.
    pub async fn take(&mut self, accepted: u64) -> Result<Sample, DbErr> {
        let t = self.started.elapsed().as_secs_f64();
        let tables = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                // The history tables are partitioned: their sizes and deletions are the sums
                // over their partitions (the parent itself holds nothing).
                "SELECT (SELECT count(*) FROM apalis.jobs)::float8, \
                        pg_total_relation_size('apalis.jobs')::float8, \
                        (SELECT count(*) FROM webhook_events)::float8, \
                        (SELECT sum(pg_total_relation_size(relid)) \
                           FROM pg_partition_tree('webhook_events'))::float8, \
                        (SELECT sum(pg_total_relation_size(relid)) \
                           FROM pg_partition_tree('webhook_attempts'))::float8, \
                        (SELECT COALESCE(sum(n_tup_del), 0) FROM pg_stat_user_tables \
                          WHERE relid IN (SELECT relid \
                                          FROM pg_partition_tree('webhook_events')))::float8, \
                        (SELECT n_tup_del FROM pg_stat_user_tables \
                          WHERE relid = 'apalis.jobs'::regclass)::float8",
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("table sizes".into()))?;
        let get = |i: usize| tables.try_get_by_index::<f64>(i);
        let mib = |bytes: f64| bytes / 1_048_576.0;
        let (pending_jobs, lag) = {
            let pool = self.db.get_postgres_connection_pool();
            let mut conn = pool.acquire().await.map_err(sqlx_err)?;
            wirehook_core::queue::stats::pending(&mut conn)
                .await
                .map_err(sqlx_err)?
        };

        let answers = std::mem::take(&mut *lock(&self.answers));
        let delivered = answers.len() as u64;
        let delivery_p99_ms = self.delivery_p99(&answers).await?;

        let cpu = self.cpu_now();
        let cpu_secs = [
            cpu[0] - self.cpu[0],
            cpu[1] - self.cpu[1],
            cpu[2] - self.cpu[2],
        ];
        self.cpu = cpu;
        let cpu_ms_per_delivery =
            (delivered > 0).then(|| cpu_secs.iter().sum::<f64>() * 1000.0 / delivered as f64);

        Ok(Sample {
            t,
            api_rss: rss_mib(self.pids.api),
            worker_rss: self.pids.workers.iter().map(|p| rss_mib(*p)).collect(),
            jobs_rows: get(0)?,
            jobs_mib: mib(get(1)?),
            events_rows: get(2)?,
            events_mib: mib(get(3)?),
            attempts_mib: mib(get(4)?),
            pending_jobs: pending_jobs as f64,
            lag,
            accepted,
            delivered,
            delivery_p99_ms,
            cpu_ms_per_delivery,
            cpu_secs,
            events_deleted: get(5)?,
            jobs_deleted: get(6)?,
        })
    }

    /// p99 of creation → 2xx arrival of the deliveries answered during the interval (events
    /// purged meanwhile are left out; retention keeps them far longer than an interval).
    async fn delivery_p99(
        &self,
        answers: &[(String, DateTime<Utc>)],
    ) -> Result<Option<f64>, DbErr> {
        if answers.is_empty() {
            return Ok(None);
        }
        let ids: Vec<&str> = answers.iter().map(|(id, _)| id.as_str()).collect();
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT message_id, created_at FROM webhook_events \
                 WHERE message_id = ANY($1::text[])",
                [pg_text_array(&ids).into()],
            ))
            .await?;
        let mut created: HashMap<String, DateTime<Utc>> = HashMap::with_capacity(rows.len());
        for row in rows {
            created.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        }
        let mut latencies: Vec<Duration> = answers
            .iter()
            .filter_map(|(id, at)| (*at - *created.get(id)?).to_std().ok())
            .collect();
        latencies.sort_unstable();
        Ok((!latencies.is_empty()).then(|| nearest_rank(&latencies, 99.0).as_secs_f64() * 1000.0))
    }

    fn cpu_now(&self) -> [f64; 3] {
        let cpu = |pid: u32| process_cpu_secs(pid).unwrap_or(0.0);
        [
            cpu(self.pids.api),
            self.pids.workers.iter().map(|p| cpu(*p)).sum(),
            cluster_cpu_secs(self.pids.postmaster),
        ]
    }
}

/// A PostgreSQL array literal of `items` (`{"a","b"}`), quoting as the text format wants.
pub fn pg_text_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

fn sqlx_err(e: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Custom(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Resident memory (`VmRSS`) of `pid` in MiB; 0 once it is gone.
pub fn rss_mib(pid: u32) -> f64 {
    crate::procs::vm_rss_kib(pid).map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// CPU seconds of a whole process tree rooted at `root` (PostgreSQL's postmaster): its own,
/// its reaped children's (`cutime`, `cstime`) and its live children's. Monotonic: a child's
/// time moves from "live" to "reaped" when it exits.
pub fn cluster_cpu_secs(root: u32) -> f64 {
    let Some(own) = stat_fields(root) else {
        return 0.0;
    };
    let ticks = |fields: &[String], i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let mut total = ticks(&own, 11) + ticks(&own, 12) + ticks(&own, 13) + ticks(&own, 14);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            if let Some(fields) = stat_fields(pid)
                && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(root)
            {
                total += ticks(&fields, 11) + ticks(&fields, 12);
            }
        }
    }
    total / clock_ticks()
}

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arrays_quote_their_items() {
        assert_eq!(pg_text_array(&["a", "b\"c"]), "{\"a\",\"b\\\"c\"}");
        assert_eq!(pg_text_array(&[]), "{}");
    }

    #[test]
    fn a_reaped_childs_cpu_counts_toward_its_parents_tree() {
        let busy = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status();
        assert!(busy.is_ok_and(|s| s.success()));
        let pid = std::process::id();
        let own = process_cpu_secs(pid).unwrap_or(f64::MAX);
        let tree = cluster_cpu_secs(pid);
        assert!(tree - own >= 0.05, "tree {tree} s, own {own} s");
    }
}
