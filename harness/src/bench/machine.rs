//! The machine a run happened on, and where its CPU time went (a coarse profile from
//! `/proc`: the benchmark's children, PostgreSQL's processes, the harness itself, and the
//! whole machine, which other users share).

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

/// Facts about the machine and server, for RESULTS.md.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// `nproc`.
    pub nproc: usize,
    /// Total memory in MiB.
    pub memory_mib: u64,
    /// CPU model.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// `SELECT version()`.
    pub postgres: String,
    /// Settings of the server that matter for writes.
    pub postgres_settings: String,
    /// Whether the server keeps what it acknowledges, as production does.
    pub durable: bool,
}

impl Machine {
    /// Reads `/proc` and asks the server.
    pub async fn probe(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let nproc = std::thread::available_parallelism().map_or(0, usize::from);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let postgres = scalar(db, "SELECT version()").await?;
        let postgres_settings = scalar(
            db,
            "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings \
             WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections', \
                            'work_mem', 'max_wal_size', 'full_page_writes')",
        )
        .await?;
        // `synchronous_commit` off only affects the benchmark's own sessions when it is the
        // server's default; the worker sets it off per connection on purpose.
        let durable = scalar(
            db,
            "SELECT (bool_and(setting = 'on'))::text FROM pg_settings \
             WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit')",
        )
        .await?
            == "true";
        Ok(Self {
            nproc,
            memory_mib,
            cpu,
            kernel,
            postgres,
            postgres_settings,
            durable,
        })
    }
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> Result<String, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(row
        .and_then(|r| r.try_get_by_index::<String>(0).ok())
        .unwrap_or_default())
}

/// CPU time (user + system) of one process so far, in seconds; `None` once it is gone.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// The parent of process `pid`; `None` once it is gone.
pub fn process_parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name: state, then the parent's pid.
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds used so far by each process whose command name starts with `postgres`.
pub fn postgres_cpu_by_pid() -> HashMap<u32, f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("postgres"))
        })
        .filter_map(|pid| Some((pid, process_cpu_secs(pid)?)))
        .collect()
}

/// Pids of the server processes working for `db`'s database now: its backends, and the
/// server's own WAL writer, checkpointer, background writer and autovacuum (their work is the
/// scenario's writes). Other databases' backends and other servers are left out.
pub async fn backend_pids(db: &DatabaseConnection) -> Result<Vec<u32>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             OR backend_type IN ('walwriter', 'checkpointer', 'background writer', \
                                 'autovacuum launcher', 'autovacuum worker')",
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get_by_index::<i32>(0).ok())
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect())
}

/// Busy CPU seconds of the whole machine so far (all cores, everyone's processes).
pub fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let values: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
    let busy: f64 = values
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds spent during a measured interval, by whom.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSplit {
    /// The benchmark's api/worker children (summed), by label.
    pub children: Vec<(String, f64)>,
    /// The PostgreSQL processes working for the scenario's database ([`backend_pids`]).
    pub postgres_ours: f64,
    /// Every other PostgreSQL process (background writers, WAL, other databases' backends).
    pub postgres_rest: f64,
    /// This harness process (receiver, load generator).
    pub harness: f64,
    /// The whole machine (includes other users).
    pub machine: f64,
    /// Wall-clock seconds of the interval.
    pub wall: f64,
}

impl CpuSplit {
    /// CPU milliseconds per event: each child label, `postgres` (its processes working for the
    /// scenario), and `total` (their sum; the harness, which plays provider and receiver, and
    /// other users are left out).
    pub fn per_event_ms(&self, events: u64) -> Vec<(String, f64)> {
        if events == 0 {
            return Vec::new();
        }
        let per = |secs: f64| secs * 1000.0 / events as f64;
        let mut parts: Vec<(String, f64)> = self
            .children
            .iter()
            .map(|(label, secs)| (label.clone(), per(*secs)))
            .collect();
        parts.push(("postgres".to_owned(), per(self.postgres_ours)));
        let total = parts.iter().map(|(_, ms)| ms).sum();
        parts.push(("total".to_owned(), total));
        parts
    }

    /// One line: `wall 10.0 s on 2 cores; worker 6.1 s, postgres 8.0 s, harness 1.2 s, …`.
    pub fn describe(&self, nproc: usize) -> String {
        let mut parts: Vec<String> = self
            .children
            .iter()
            .map(|(label, secs)| format!("{label} {secs:.1} s"))
            .collect();
        parts.push(format!(
            "postgres working for this database {:.1} s",
            self.postgres_ours
        ));
        parts.push(format!(
            "other postgres processes {:.1} s",
            self.postgres_rest
        ));
        parts.push(format!("harness {:.1} s", self.harness));
        let ours: f64 = self.children.iter().map(|(_, s)| s).sum::<f64>()
            + self.postgres_ours
            + self.postgres_rest
            + self.harness;
        parts.push(format!("others {:.1} s", (self.machine - ours).max(0.0)));
        format!(
            "CPU over {:.1} s wall ({} cores = {:.1} CPU-s available): {}",
            self.wall,
            nproc,
            self.wall * nproc as f64,
            parts.join(", ")
        )
    }
}

/// Takes CPU readings at the start of an interval; [`CpuMeter::stop`] gives the split.
pub struct CpuMeter {
    started: std::time::Instant,
    children: Vec<(String, u32, f64)>,
    postgres: HashMap<u32, f64>,
    harness: f64,
    machine: f64,
}

impl CpuMeter {
    /// Starts measuring; `children` are `(label, pid)` of the processes to account for.
    pub fn start(children: &[(String, u32)]) -> Self {
        Self {
            started: std::time::Instant::now(),
            children: children
                .iter()
                .map(|(label, pid)| (label.clone(), *pid, process_cpu_secs(*pid).unwrap_or(0.0)))
                .collect(),
            postgres: postgres_cpu_by_pid(),
            harness: process_cpu_secs(std::process::id()).unwrap_or(0.0),
            machine: machine_busy_secs(),
        }
    }

    /// The CPU spent since [`start`](Self::start) (children must still be running);
    /// `ours` are the pids of the backends serving the scenario's database
    /// ([`backend_pids`]).
    pub fn stop(&self, ours: &[u32]) -> CpuSplit {
        let mut children: Vec<(String, f64)> = Vec::new();
        for (label, pid, before) in &self.children {
            let used = process_cpu_secs(*pid).map_or(0.0, |now| now - before);
            match children.iter_mut().find(|(l, _)| l == label) {
                Some((_, sum)) => *sum += used,
                None => children.push((label.clone(), used)),
            }
        }
        let (mut postgres_ours, mut postgres_rest) = (0.0, 0.0);
        for (pid, now) in postgres_cpu_by_pid() {
            let used = now - self.postgres.get(&pid).copied().unwrap_or(0.0);
            if ours.contains(&pid) {
                postgres_ours += used;
            } else {
                postgres_rest += used;
            }
        }
        CpuSplit {
            children,
            postgres_ours,
            postgres_rest,
            harness: process_cpu_secs(std::process::id()).unwrap_or(0.0) - self.harness,
            machine: machine_busy_secs() - self.machine,
            wall: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Activity counters of one database (`pg_stat_database`), for work per delivery or request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbCounters {
    /// Committed transactions.
    pub commits: i64,
    /// Rows inserted.
    pub inserted: i64,
    /// Rows updated.
    pub updated: i64,
    /// Rows deleted.
    pub deleted: i64,
    /// Rows returned by scans.
    pub returned: i64,
}

impl DbCounters {
    /// The counters of `db`'s database now (the server flushes backends' counts at least every
    /// second and when they exit, so read them after the measured processes stopped).
    pub async fn read(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, tup_returned \
                 FROM pg_stat_database WHERE datname = current_database()",
            ))
            .await?;
        let Some(row) = row else {
            return Ok(Self::default());
        };
        Ok(Self {
            commits: row.try_get_by_index(0)?,
            inserted: row.try_get_by_index(1)?,
            updated: row.try_get_by_index(2)?,
            deleted: row.try_get_by_index(3)?,
            returned: row.try_get_by_index(4)?,
        })
    }

    /// `later - self`, described per unit of work: `2.1 commits, 3.0 rows inserted, … per
    /// delivery`.
    pub fn per(&self, later: &Self, units: u64, unit: &str) -> String {
        let n = units.max(1) as f64;
        let per = |a: i64, b: i64| (b - a) as f64 / n;
        format!(
            "per {unit}: {:.2} commits, {:.2} rows inserted, {:.2} updated, {:.2} deleted, \
             {:.1} rows read by scans (pg_stat_database; the harness's own few queries included)",
            per(self.commits, later.commits),
            per(self.inserted, later.inserted),
            per(self.updated, later.updated),
            per(self.deleted, later.deleted),
            per(self.returned, later.returned),
        )
    }
}

/// Per-table activity counters (`pg_stat_user_tables`), for which table work goes to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableCounters {
    /// `schema.table` → [seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins,
    /// n_tup_upd, n_tup_hot_upd, n_tup_del].
    pub tables: std::collections::BTreeMap<String, [i64; 8]>,
}

impl TableCounters {
    /// The counters of every table of `db`'s database now.
    pub async fn read(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT schemaname || '.' || relname, seq_scan, seq_tup_read, \
                        coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0), n_tup_ins, n_tup_upd, \
                        n_tup_hot_upd, n_tup_del \
                 FROM pg_stat_user_tables",
            ))
            .await?;
        let mut tables = std::collections::BTreeMap::new();
        for row in rows {
            let mut values = [0i64; 8];
            for (i, value) in values.iter_mut().enumerate() {
                *value = row.try_get_by_index(i + 1)?;
            }
            tables.insert(row.try_get_by_index::<String>(0)?, values);
        }
        Ok(Self { tables })
    }

    /// A Markdown table of `later - self` per unit of work, busiest tables first.
    pub fn per(&self, later: &Self, units: u64, unit: &str) -> String {
        let n = units.max(1) as f64;
        let mut rows: Vec<(String, [f64; 8])> = later
            .tables
            .iter()
            .map(|(name, after)| {
                let before = self.tables.get(name).copied().unwrap_or_default();
                let mut delta = [0.0; 8];
                for i in 0..8 {
                    delta[i] = (after[i] - before[i]) as f64 / n;
                }
                (name.clone(), delta)
            })
            .filter(|(_, d)| d.iter().any(|v| *v != 0.0))
            .collect();
        rows.sort_by(|a, b| (b.1[1] + b.1[3]).total_cmp(&(a.1[1] + a.1[3])));
        let mut out = format!(
            "| table (per {unit}) | seq scans | rows read by seq scans | index scans | rows \
             fetched by index | inserted | updated | of which HOT | deleted |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        );
        for (name, d) in rows {
            out.push_str(&format!(
                "| {name} | {:.3} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_event_splits_children_and_postgres_and_sums_them_without_the_harness() {
        let split = CpuSplit {
            children: vec![("api".into(), 2.0), ("worker".into(), 3.0)],
            postgres_ours: 5.0,
            postgres_rest: 7.0,
            harness: 11.0,
            machine: 30.0,
            wall: 10.0,
        };
        assert_eq!(
            split.per_event_ms(10_000),
            vec![
                ("api".to_owned(), 0.2),
                ("worker".to_owned(), 0.3),
                ("postgres".to_owned(), 0.5),
                ("total".to_owned(), 1.0),
            ]
        );
    }

    #[test]
    fn cpu_per_event_of_no_event_is_empty() {
        assert!(CpuSplit::default().per_event_ms(0).is_empty());
    }
}
