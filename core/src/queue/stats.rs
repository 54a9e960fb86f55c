//! What the queue and the history tables hold, for the maintenance leader's gauges.

use sea_orm::sqlx::{self, PgConnection};

use crate::job::QUEUE;

/// Delivery jobs waiting, and how many seconds the oldest due one has waited (0 when none is).
pub async fn pending(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    let (pending, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), \
                EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8 \
         FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending'",
    )
    .bind(QUEUE)
    .fetch_one(conn)
    .await?;
    Ok((pending, oldest.unwrap_or(0.0).max(0.0)))
}

/// One table's estimated rows and on-disk size (with indexes and TOAST).
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub name: &'static str,
    /// The planner's estimate (`reltuples`, kept by autovacuum and analyze): counting would
    /// read the table.
    pub rows: i64,
    pub bytes: i64,
}

/// The tables that grow with traffic: the jobs table, which only the cleanup keeps flat, and
/// the history, which retention keeps flat.
pub const GROWING_TABLES: [&str; 3] = ["apalis.jobs", "webhook_events", "webhook_attempts"];

/// Sizes of [`GROWING_TABLES`]; a partitioned table's are the sums over its partitions.
pub async fn tables(conn: &mut PgConnection) -> Result<Vec<TableSize>, sqlx::Error> {
    let mut sizes = Vec::with_capacity(GROWING_TABLES.len());
    for name in GROWING_TABLES {
        let (rows, bytes): (f64, i64) = sqlx::query_as(
            "SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::float8, \
                    COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint \
             FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind = 'r' \
                OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass($1)) WHERE isleaf)",
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
        sizes.push(TableSize {
            name,
            rows: rows as i64,
            bytes,
        });
    }
    Ok(sizes)
}
