//! What the queue holds, for the maintenance leader's gauges.

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
