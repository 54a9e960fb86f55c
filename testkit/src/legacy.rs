//! A database as it was before the history was partitioned (migration
//! `m20261210_000001_partitioned_history`), filled with events, and the fingerprint that shows
//! a migration in place kept every row, id and message id. The api's migration test fills 50k
//! events; the bench's `migrate` scenario fills 1M.

use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// Applies the migrations before partitioning only (no apalis schema: the fill needs none).
pub async fn migrate_before_partitioning(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared(
        "CREATE EXTENSION IF NOT EXISTS pgcrypto; CREATE EXTENSION IF NOT EXISTS hstore;",
    )
    .await?;
    migration::Migrator::up(db, Some(migration::BEFORE_PARTITIONING)).await
}

/// Fills the unpartitioned tables with `events` events spread over the last 40 days: half
/// inbound (`processed`, each with a provider de-duplication key), half outbound to one
/// configuration (`delivered`, `failed`, and one in ten `pending`), each outbound with one
/// attempt; some outbound events are ordered (key and sequence). In chunks of 100k rows.
pub async fn fill(db: &DatabaseConnection, events: i64) -> Result<(), DbErr> {
    db.execute_unprepared(
        "INSERT INTO webhook_configs (name, url, secret, event_types, status, retry_config) \
         VALUES ('legacy', 'http://127.0.0.1:9/hook', 'x', '[\"call.completed\"]', 'active', \
                 '{\"maxAttempts\": 5, \"initialDelay\": 30, \"maxDelay\": 3600, \"backoffFactor\": 2}')",
    )
    .await?;
    let chunk = 100_000;
    let mut from = 1;
    while from <= events {
        let to = (from + chunk - 1).min(events);
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH e AS ( \
               INSERT INTO webhook_events (message_id, direction, source, event_type, payload, \
                 status, attempts, webhook_config_id, dedupe_key, ordering_key, ordering_seq, \
                 next_attempt_at, created_at, updated_at) \
               SELECT 'msg_legacy' || lpad(g::text, 20, '0'), \
                 CASE WHEN g % 2 = 0 THEN 'inbound' ELSE 'outbound' END, \
                 CASE WHEN g % 2 = 0 THEN 'signalwire' ELSE '11wire' END, 'call.completed', \
                 jsonb_build_object('callId', 'CA' || (g / 4)), \
                 CASE WHEN g % 2 = 0 THEN 'processed' WHEN g % 10 = 1 THEN 'pending' \
                      WHEN g % 10 = 3 THEN 'failed' ELSE 'delivered' END, \
                 g % 2, CASE WHEN g % 2 = 1 THEN (SELECT min(id) FROM webhook_configs) END, \
                 CASE WHEN g % 2 = 0 THEN 'key-' || g END, \
                 CASE WHEN g % 20 = 5 THEN 'order-' || (g % 7) END, \
                 CASE WHEN g % 20 = 5 THEN g END, \
                 CASE WHEN g % 10 = 1 THEN now() END, \
                 now() - make_interval(secs => ($2 - g) * (40 * 86400.0 / $2)), now() \
               FROM generate_series($1::bigint, $3::bigint) AS g \
               ORDER BY g \
               RETURNING id, direction, created_at) \
             INSERT INTO webhook_attempts (event_id, attempt, status_code, duration_ms, created_at) \
             SELECT id, 1, 200, 12, created_at FROM e WHERE direction = 'outbound'",
            [from.into(), events.into(), to.into()],
        ))
        .await?;
        from = to + 1;
    }
    db.execute_unprepared("ANALYZE webhook_events; ANALYZE webhook_attempts")
        .await?;
    Ok(())
}

/// What must survive a migration: row counts, a digest of every `(id, message_id)` and
/// `(attempt id, event id)`, and the history total the per-day counts give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub events: i64,
    pub attempts: i64,
    pub event_digest: String,
    pub attempt_digest: String,
    pub counted: i64,
}

/// The [`Fingerprint`] of the history as it is now.
pub async fn fingerprint(db: &DatabaseConnection) -> Result<Fingerprint, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT \
               (SELECT count(*) FROM webhook_events) AS events, \
               (SELECT count(*) FROM webhook_attempts) AS attempts, \
               (SELECT md5(string_agg(id || ':' || message_id || ':' || status, ',' ORDER BY id)) \
                FROM webhook_events) AS event_digest, \
               (SELECT md5(string_agg(id || ':' || event_id, ',' ORDER BY id)) \
                FROM webhook_attempts) AS attempt_digest, \
               (SELECT COALESCE(sum(n), 0)::bigint FROM ( \
                  SELECT n FROM webhook_event_counts \
                  UNION ALL SELECT n FROM webhook_event_count_deltas) AS c) AS counted",
        ))
        .await?
        .ok_or(DbErr::RecordNotFound("fingerprint".into()))?;
    Ok(Fingerprint {
        events: row.try_get("", "events")?,
        attempts: row.try_get("", "attempts")?,
        event_digest: row.try_get("", "event_digest")?,
        attempt_digest: row.try_get("", "attempt_digest")?,
        counted: row.try_get("", "counted")?,
    })
}
