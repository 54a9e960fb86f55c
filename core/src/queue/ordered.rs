//! Ordered delivery per key: for a configuration with `ordering`, the deliveries of one key
//! value go one at a time, in the order the events were accepted.
//!
//! Only the *head* of a key (the event whose sequence is the key's `head_seq`) has a job; the
//! events behind it are *waiting* (`pending`, `waiting_on_key`, no `next_attempt_at`, no job).
//! - The group commit ([`super::fan_out`]) appends to a key under its row lock in
//!   `webhook_ordering_keys`: sequences in accept order, and a job only for an event that finds
//!   the key idle.
//! - The transaction that settles the head (delivered; failed for good under `detach`; a retry
//!   scheduled once it has held the key for `maxHoldSeconds` under `detach`; skipped) moves the
//!   key to the next waiting event and gives it a job ([`release`]), under the same row lock.
//! - The maintenance leader's [`sweep`] releases keys whose head settled without releasing
//!   (cancelled because its configuration was inactive, deleted by retention, a manual retry
//!   of a later event) or held its key too long under `detach`, and idles the keys of
//!   configurations that are no longer active.
//!
//! Locks: a writer locks the events it settles (by id), then key rows (by config id, key),
//! then the waiting events it releases. The fan-out locks key rows only (its events are new);
//! the api's cancellation locks events only. No two of them wait on each other in a cycle.

use chrono::{DateTime, Utc};
use entity::{ConfigId, ConfigStatus, Direction, EventId, EventStatus, webhook_events};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult, Statement,
    TransactionTrait,
};
use serde::Serialize;
use serde_json::Value;

use super::push_grouped;

/// How long a key must have been held before the [`sweep`] looks at it. Not needed for
/// correctness (a head's settle and its release commit together, and the release re-checks the
/// head under the key's lock), only to keep the sweep off the keys that turn over every moment.
pub const SWEEP_GRACE_SECS: i64 = 1;

/// Most keys one [`sweep`] handles.
const SWEEP_KEYS: i64 = 1_000;

/// A head that may release its key: the event `seq` of (`config_id`, `key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub config_id: ConfigId,
    pub key: String,
    pub seq: i64,
    /// Release only if the head has held the key since this time or earlier (a `detach` head
    /// still retrying); `None`: release now (the head settled).
    pub held_before: Option<DateTime<Utc>>,
}

/// Locks the key rows of `keys` in (config id, key) order: the per-key lock, held until the
/// transaction ends. Its own statement, so the next statement's snapshot sees every append
/// committed before the lock was granted.
async fn lock_keys(conn: &impl ConnectionTrait, keys: &[(ConfigId, &str)]) -> Result<(), DbErr> {
    if keys.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = keys
        .iter()
        .map(|(config_id, key)| serde_json::json!({"config_id": config_id, "key": key}))
        .collect();
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT 1 FROM webhook_ordering_keys k \
         JOIN jsonb_to_recordset($1::jsonb) AS r(config_id bigint, key text) \
           ON k.config_id = r.config_id AND k.key = r.key \
         ORDER BY k.config_id, k.key FOR NO KEY UPDATE OF k",
        [Value::Array(rows).into()],
    ))
    .await?;
    Ok(())
}

/// For each of `heads` that still holds its key (and, with `held_before`, has held it that
/// long), hands the key to its next waiting event and queues that event now; a key with
/// nothing waiting becomes idle. Returns the events queued. Run it inside the transaction that
/// settles the heads, after locking them.
pub async fn release(
    conn: &impl ConnectionTrait,
    heads: &[Release],
) -> Result<Vec<EventId>, DbErr> {
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys: Vec<(ConfigId, &str)> = heads
        .iter()
        .map(|h| (h.config_id, h.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    lock_keys(conn, &keys).await?;
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "WITH r AS ( \
                   SELECT * FROM jsonb_to_recordset($1::jsonb) \
                     AS r(config_id bigint, key text, seq bigint, held_before timestamptz)), \
                 held AS ( \
                   SELECT DISTINCT k.config_id, k.key FROM webhook_ordering_keys k \
                   JOIN r ON k.config_id = r.config_id AND k.key = r.key \
                   WHERE k.head_seq = r.seq \
                     AND (r.held_before IS NULL OR k.head_since <= r.held_before)), \
                 nxt AS ( \
                   SELECT h.config_id, h.key, n.id, n.ordering_seq FROM held h \
                   LEFT JOIN LATERAL ( \
                     SELECT e.id, e.ordering_seq FROM webhook_events e \
                     WHERE e.webhook_config_id = h.config_id AND e.ordering_key = h.key \
                       AND e.waiting_on_key \
                     ORDER BY e.ordering_seq LIMIT 1) n ON true), \
                 woken AS ( \
                   UPDATE webhook_events e \
                   SET waiting_on_key = false, next_attempt_at = now(), updated_at = now() \
                   FROM nxt WHERE e.id = nxt.id AND e.waiting_on_key AND e.status = {pending} \
                   RETURNING e.id), \
                 moved AS ( \
                   UPDATE webhook_ordering_keys k \
                   SET head_seq = nxt.ordering_seq, \
                       head_since = CASE WHEN nxt.id IS NULL THEN NULL ELSE now() END, \
                       updated_at = now() \
                   FROM nxt WHERE k.config_id = nxt.config_id AND k.key = nxt.key \
                   RETURNING k.key) \
                 SELECT id, (SELECT count(*) FROM moved) AS moved FROM woken",
                pending = EventStatus::Pending.sql_literal(),
            ),
            [serde_json::to_value(heads)
                .map_err(|e| DbErr::Json(e.to_string()))?
                .into()],
        ))
        .await?;
    let mut ids = rows
        .iter()
        .map(|row| row.try_get::<EventId>("", "id"))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    push_grouped(conn, &ids).await?;
    Ok(ids)
}

/// Cancels with `why` the events waiting on every key of `config_id` (its heads have jobs, and
/// their jobs cancel them); returns how many. The caller holds the configuration's row lock.
pub async fn cancel_waiting(
    conn: &impl ConnectionTrait,
    config_id: ConfigId,
    why: &str,
) -> Result<u64, DbErr> {
    let cancelled = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH picked AS ( \
               SELECT id FROM webhook_events WHERE webhook_config_id = $1 AND waiting_on_key \
               ORDER BY id FOR NO KEY UPDATE) \
             UPDATE webhook_events AS e \
             SET status = $3, waiting_on_key = false, last_error = $2, updated_at = now() \
             WHERE e.id = ANY(ARRAY(SELECT id FROM picked)) AND e.waiting_on_key",
            [
                config_id.into(),
                why.into(),
                EventStatus::Cancelled.as_str().into(),
            ],
        ))
        .await?;
    Ok(cancelled.rows_affected())
}

/// Why an event cannot be skipped.
#[derive(Debug, thiserror::Error)]
pub enum SkipRefused {
    #[error("webhook event {0} not found")]
    NotFound(EventId),
    #[error("only outbound deliveries of an ordered configuration can be skipped")]
    NotOrdered,
    #[error("the event is {0}; only pending or failed deliveries can be skipped")]
    NotSkippable(&'static str),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// An operator skips an ordered delivery: it is cancelled (its job, if any, then finds it so
/// and does nothing) and, if it held its key, the next event of the key goes now. Run it inside
/// a transaction.
pub async fn skip(
    conn: &impl ConnectionTrait,
    event_id: EventId,
) -> Result<webhook_events::Model, SkipRefused> {
    let event = webhook_events::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT * FROM webhook_events WHERE id = $1 FOR NO KEY UPDATE",
            [event_id.into()],
        ))
        .one(conn)
        .await?
        .ok_or(SkipRefused::NotFound(event_id))?;
    let (Some(config_id), Some(key), Some(seq), Direction::Outbound) = (
        event.webhook_config_id,
        event.ordering_key.clone(),
        event.ordering_seq,
        event.direction,
    ) else {
        return Err(SkipRefused::NotOrdered);
    };
    if !matches!(event.status, EventStatus::Pending | EventStatus::Failed) {
        return Err(SkipRefused::NotSkippable(event.status.as_str()));
    }
    let config_id = ConfigId(config_id);
    lock_keys(conn, &[(config_id, key.as_str())]).await?;
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE webhook_events \
             SET status = $2, waiting_on_key = false, next_attempt_at = NULL, \
                 last_error = 'skipped by an operator', updated_at = now() \
             WHERE id = $1 RETURNING *",
            [event_id.into(), EventStatus::Cancelled.as_str().into()],
        ))
        .await?
        .ok_or(SkipRefused::NotFound(event_id))?;
    let skipped = webhook_events::Model::from_query_result(&row, "")?;
    release(
        conn,
        &[Release {
            config_id,
            key,
            seq,
            held_before: None,
        }],
    )
    .await?;
    Ok(skipped)
}

/// What one [`sweep`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Keys handed to their next event (or idled when nothing waited).
    pub released: u64,
    /// Keys of configurations no longer active, idled.
    pub idled: u64,
    /// Waiting events cancelled because their configuration is no longer active.
    pub cancelled: u64,
}

/// The maintenance leader's safety net for ordered keys, run every few seconds. Looks only at
/// keys held for more than [`SWEEP_GRACE_SECS`], and acts on those whose head:
/// - is gone, delivered or cancelled, or failed for good under `detach` (its settle did not
///   release the key: it was cancelled by a job of an inactive configuration, purged, …);
/// - is still pending under `detach` and has held the key for `maxHoldSeconds`;
/// - belongs to a configuration that is no longer active or no longer ordered.
///
/// A head that failed for good under `block`, or is pending under `block`, keeps its key.
pub async fn sweep(db: &DatabaseConnection) -> Result<Swept, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT k.config_id, k.key, k.head_seq, c.status = {active} AS active \
                 FROM webhook_ordering_keys k \
                 JOIN webhook_configs c ON c.id = k.config_id \
                 LEFT JOIN webhook_events e ON e.webhook_config_id = k.config_id \
                   AND e.ordering_key = k.key AND e.ordering_seq = k.head_seq \
                 WHERE k.head_seq IS NOT NULL \
                   AND k.head_since < now() - $1 * interval '1 second' \
                   AND (c.status <> {active} OR c.ordering IS NULL OR e.id IS NULL \
                        OR e.status IN ({delivered}, {cancelled}) \
                        OR (e.status = {failed} AND c.ordering->>'onStuck' <> 'block') \
                        OR (e.status = {pending} AND c.ordering->>'onStuck' <> 'block' \
                            AND k.head_since < now() - \
                              (c.ordering->>'maxHoldSeconds')::float8 * interval '1 second')) \
                 ORDER BY k.head_since LIMIT $2",
                active = ConfigStatus::Active.sql_literal(),
                delivered = EventStatus::Delivered.sql_literal(),
                cancelled = EventStatus::Cancelled.sql_literal(),
                failed = EventStatus::Failed.sql_literal(),
                pending = EventStatus::Pending.sql_literal(),
            ),
            [SWEEP_GRACE_SECS.into(), SWEEP_KEYS.into()],
        ))
        .await?;
    let mut releases = Vec::new();
    let mut idle = Vec::new();
    for row in rows {
        let config_id: ConfigId = row.try_get("", "config_id")?;
        let key: String = row.try_get("", "key")?;
        let seq: i64 = row.try_get("", "head_seq")?;
        if row.try_get::<bool>("", "active")? {
            releases.push(Release {
                config_id,
                key,
                seq,
                held_before: None,
            });
        } else {
            idle.push((config_id, key, seq));
        }
    }
    let mut swept = Swept::default();
    if !releases.is_empty() {
        let txn = db.begin().await?;
        let woken = release(&txn, &releases).await?;
        txn.commit().await?;
        swept.released = releases.len() as u64;
        tracing::info!(
            keys = releases.len(),
            woken = woken.len(),
            "ordered keys released by the sweep"
        );
    }
    if !idle.is_empty() {
        let txn = db.begin().await?;
        let (cancelled, idled) = idle_keys(&txn, &idle).await?;
        txn.commit().await?;
        swept.cancelled = cancelled;
        swept.idled = idled;
    }
    Ok(swept)
}

/// Idles the keys `keys` (of configurations no longer active) that are still held by the
/// given sequence, cancelling what waits on them; returns (events cancelled, keys idled).
async fn idle_keys(
    conn: &impl ConnectionTrait,
    keys: &[(ConfigId, String, i64)],
) -> Result<(u64, u64), DbErr> {
    let mut locked: Vec<(ConfigId, &str)> = keys.iter().map(|(c, k, _)| (*c, k.as_str())).collect();
    locked.sort_unstable();
    lock_keys(conn, &locked).await?;
    let rows: Vec<Value> = keys
        .iter()
        .map(|(config_id, key, seq)| serde_json::json!({"config_id": config_id, "key": key, "seq": seq}))
        .collect();
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH r AS (SELECT * FROM jsonb_to_recordset($1::jsonb) \
                          AS r(config_id bigint, key text, seq bigint)), \
             idled AS ( \
               UPDATE webhook_ordering_keys k SET head_seq = NULL, head_since = NULL, \
                      updated_at = now() \
               FROM r WHERE k.config_id = r.config_id AND k.key = r.key AND k.head_seq = r.seq \
               RETURNING k.config_id, k.key), \
             cancelled AS ( \
               UPDATE webhook_events e \
               SET status = $2, waiting_on_key = false, \
                   last_error = 'configuration deleted or not active', updated_at = now() \
               FROM idled WHERE e.webhook_config_id = idled.config_id \
                 AND e.ordering_key = idled.key AND e.waiting_on_key \
               RETURNING e.id) \
             SELECT (SELECT count(*) FROM cancelled) AS cancelled, \
                    (SELECT count(*) FROM idled) AS idled",
            [
                Value::Array(rows).into(),
                EventStatus::Cancelled.as_str().into(),
            ],
        ))
        .await?;
    match row {
        Some(row) => Ok((
            u64::try_from(row.try_get::<i64>("", "cancelled")?).unwrap_or(0),
            u64::try_from(row.try_get::<i64>("", "idled")?).unwrap_or(0),
        )),
        None => Ok((0, 0)),
    }
}

/// Keys blocked now: held under `block` for longer than their `maxHoldSeconds` (a head still
/// retrying, or failed for good and waiting for a retry or a skip), and how many seconds the
/// oldest has been held (0 when none is).
pub async fn blocked(conn: &impl ConnectionTrait) -> Result<(i64, f64), DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT count(*) AS blocked, \
                        COALESCE(EXTRACT(EPOCH FROM now() - min(k.head_since)), 0)::float8 AS oldest \
                 FROM webhook_ordering_keys k JOIN webhook_configs c ON c.id = k.config_id \
                 WHERE k.head_seq IS NOT NULL AND c.status = {active} \
                   AND c.ordering->>'onStuck' = 'block' \
                   AND k.head_since < now() - \
                     (c.ordering->>'maxHoldSeconds')::float8 * interval '1 second'",
                active = ConfigStatus::Active.sql_literal(),
            ),
        ))
        .await?;
    match row {
        Some(row) => Ok((
            row.try_get("", "blocked")?,
            row.try_get::<f64>("", "oldest")?.max(0.0),
        )),
        None => Ok((0, 0.0)),
    }
}

/// Deletes idle keys (nothing holds or waits on them) untouched since `cutoff`, so the table
/// does not grow with every call ever ordered; returns how many. A later event of such a key
/// starts it again at sequence 1 with no `previousId`.
pub async fn forget_idle(conn: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let deleted = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM webhook_ordering_keys WHERE head_seq IS NULL AND updated_at < $1",
            [cutoff.into()],
        ))
        .await?;
    Ok(deleted.rows_affected())
}
