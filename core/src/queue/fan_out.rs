//! The group commit's statement: received events, one delivery per planned configuration that
//! is still active, and the deliveries' jobs, in one atomic statement. The api's ingest builds
//! the rows; what the jobs look like is this module's business.

use entity::{ConfigStatus, Direction, EventStatus};
use sea_orm::{DbBackend, Statement};

use super::INFRA_MAX_ATTEMPTS;
use crate::job::{MAX_EVENTS_PER_JOB, QUEUE};

/// The statement for `inbound_rows` (JSON array of `{message_id, source, event_type, payload,
/// status, provider_payload, dedupe_key, client_ip}`) and `planned` (JSON array of
/// `{message_id, parent, config_id}`, `deliveries` of them; with `ordered`, each also has
/// `okey`, its ordering key or null, and `pos`, its place in accept order). It returns one row
/// per inserted inbound event: `id, message_id, created_at, updated_at, deliveries`.
///
/// A batch without ordered deliveries runs exactly the statement it ran before ordering
/// existed: no key table, no window, no extra index.
pub fn statement(
    inbound_rows: String,
    planned: String,
    deliveries: usize,
    ordered: bool,
) -> Statement {
    let job_ids: Vec<String> = (0..deliveries.div_ceil(MAX_EVENTS_PER_JOB))
        .map(|_| ulid::Ulid::generate().to_string())
        .collect();
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        if ordered { ORDERED_SQL } else { RECORD_SQL },
        [
            inbound_rows.into(),
            planned.into(),
            serde_json::Value::from(job_ids).to_string().into(),
            QUEUE.into(),
            INFRA_MAX_ATTEMPTS.into(),
            i64::try_from(MAX_EVENTS_PER_JOB).unwrap_or(16).into(),
            Direction::Inbound.as_str().into(),
            Direction::Outbound.as_str().into(),
            EventStatus::Pending.as_str().into(),
            ConfigStatus::Active.as_str().into(),
        ],
    )
}

/// `$1`: the inbound rows, `$2`: the planned deliveries (`message_id`, `parent` = the inbound
/// row's message id, `config_id`), `$3`: ids for the jobs, `$4`: the queue, `$5`: apalis' attempt
/// limit, `$6`: events per job; `$7`..`$10`: the texts of `inbound`, `outbound`, `pending` and
/// `active`, bound from their enums (the configurations are found by id, so no index predicate
/// needs a literal status).
///
/// - `ins`: the inbound events in key order (two replicas' batches with common keys then wait
///   on each other in the same order instead of deadlocking); a taken key inserts nothing.
///   Keys are unique per day partition (`ON CONFLICT DO NOTHING` arbitrates on today's unique
///   indexes: a key inserted concurrently waits for the other commit), and the day before (and
///   the legacy partition, ids below 2^36) is looked up: the de-duplication window is the current
///   and the previous UTC day. The two lookups prune to those partitions.
/// - `live`: the planned configurations that are still active, locked `FOR KEY SHARE`.
/// - `outb`: a `pending` outbound event per planned delivery whose parent was inserted and
///   whose configuration is live.
/// - `jobs`: up to [`MAX_EVENTS_PER_JOB`] outbound events a job, stored as
///   [`DeliveryJob::to_payload`](crate::job::DeliveryJob::to_payload) stores them (version 1 for one event,
///   2 for several), due at the statement's `now()` so that apalis' insert trigger notifies.
const RECORD_SQL: &str = "\
WITH ins AS ( \
  INSERT INTO webhook_events \
    (message_id, direction, source, event_type, payload, status, provider_payload, dedupe_key, \
     client_ip) \
  SELECT r.message_id, $7, r.source, r.event_type, r.payload, r.status, \
         r.provider_payload, r.dedupe_key, r.client_ip \
  FROM jsonb_to_recordset($1::jsonb) AS r(message_id text, source text, event_type text, \
       payload jsonb, status text, provider_payload jsonb, dedupe_key text, client_ip text) \
  WHERE r.dedupe_key IS NULL OR NOT EXISTS ( \
    SELECT FROM webhook_events e WHERE e.source = r.source AND e.dedupe_key = r.dedupe_key \
      AND (e.id < 68719476736 \
           OR e.id >= webhook_day_first_id((now() AT TIME ZONE 'UTC')::date - 1)) \
      AND e.id < webhook_day_first_id((now() AT TIME ZONE 'UTC')::date)) \
  ORDER BY r.source, r.dedupe_key, r.message_id \
  ON CONFLICT DO NOTHING \
  RETURNING id, message_id, source, event_type, payload, created_at, updated_at \
), planned AS ( \
  SELECT * FROM jsonb_to_recordset($2::jsonb) AS d(message_id text, parent text, config_id bigint) \
), live AS ( \
  SELECT id FROM webhook_configs \
  WHERE id IN (SELECT config_id FROM planned) AND status = $10 \
  FOR KEY SHARE \
), outb AS ( \
  INSERT INTO webhook_events \
    (message_id, direction, source, event_type, payload, status, attempts, attempt_base, \
     webhook_config_id, parent_event_id, next_attempt_at, created_at, updated_at) \
  SELECT p.message_id, $8, ins.source, ins.event_type, ins.payload, $9, 0, 0, \
         p.config_id, ins.id, now(), now(), now() \
  FROM planned p JOIN ins ON ins.message_id = p.parent JOIN live ON live.id = p.config_id \
  RETURNING id, parent_event_id \
), grouped AS ( \
  SELECT (row_number() OVER (ORDER BY id) - 1) / $6 + 1 AS n, id FROM outb \
), jobs AS ( \
  INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
  SELECT j.id, $4, convert_to(CASE WHEN count(*) = 1 \
           THEN jsonb_build_object('v', 1, 'event_id', min(g.id)) \
           ELSE jsonb_build_object('v', 2, 'event_ids', jsonb_agg(g.id ORDER BY g.id)) END::text, \
         'UTF8'), 'Pending', 0, $5, now(), 0 \
  FROM grouped g JOIN jsonb_array_elements_text($3::jsonb) WITH ORDINALITY AS j(id, n) \
    ON j.n = g.n \
  GROUP BY j.id \
) \
SELECT ins.id, ins.message_id, ins.created_at, ins.updated_at, \
       (SELECT count(*) FROM outb WHERE outb.parent_event_id = ins.id) AS deliveries \
FROM ins";

/// [`RECORD_SQL`] for a batch with ordered deliveries (`super::ordered`); `$2`'s rows also
/// carry `okey` (the ordering key, null for an unordered delivery) and `pos` (accept order).
///
/// - `go`: the deliveries to insert, numbered per (configuration, key) in accept order.
/// - `keys`: one append per key, in (configuration, key) order, which is also the order the
///   key rows are locked in: the row lock serializes the batches (and the releases) of one key,
///   so sequences follow commit order. The key's new `last_seq` and its `last_message_id`
///   before the append come back (`prior_message_id`); an idle key (`head_seq` NULL) is taken
///   by the first event appended.
/// - `placed`: each delivery's sequence, previous message id, and whether it waits (every
///   ordered delivery but the key's head).
/// - `outb`: inserted after its key's append, so within a key ids grow with sequences.
/// - `jobs`: only for the deliveries that do not wait.
const ORDERED_SQL: &str = "\
WITH ins AS ( \
  INSERT INTO webhook_events \
    (message_id, direction, source, event_type, payload, status, provider_payload, dedupe_key, \
     client_ip) \
  SELECT r.message_id, $7, r.source, r.event_type, r.payload, r.status, \
         r.provider_payload, r.dedupe_key, r.client_ip \
  FROM jsonb_to_recordset($1::jsonb) AS r(message_id text, source text, event_type text, \
       payload jsonb, status text, provider_payload jsonb, dedupe_key text, client_ip text) \
  WHERE r.dedupe_key IS NULL OR NOT EXISTS ( \
    SELECT FROM webhook_events e WHERE e.source = r.source AND e.dedupe_key = r.dedupe_key \
      AND (e.id < 68719476736 \
           OR e.id >= webhook_day_first_id((now() AT TIME ZONE 'UTC')::date - 1)) \
      AND e.id < webhook_day_first_id((now() AT TIME ZONE 'UTC')::date)) \
  ORDER BY r.source, r.dedupe_key, r.message_id \
  ON CONFLICT DO NOTHING \
  RETURNING id, message_id, source, event_type, payload, created_at, updated_at \
), planned AS ( \
  SELECT * FROM jsonb_to_recordset($2::jsonb) \
    AS d(message_id text, parent text, config_id bigint, okey text, pos bigint) \
), live AS ( \
  SELECT id FROM webhook_configs \
  WHERE id IN (SELECT config_id FROM planned) AND status = $10 \
  FOR KEY SHARE \
), go AS ( \
  SELECT p.message_id, p.config_id, p.okey, ins.id AS parent_id, ins.source, ins.event_type, \
         ins.payload, \
         row_number() OVER w AS n, \
         count(*) OVER (PARTITION BY p.config_id, p.okey) AS total, \
         lag(p.message_id) OVER w AS prev_in_batch, \
         last_value(p.message_id) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING \
                                          AND UNBOUNDED FOLLOWING) AS last_in_batch \
  FROM planned p JOIN ins ON ins.message_id = p.parent JOIN live ON live.id = p.config_id \
  WINDOW w AS (PARTITION BY p.config_id, p.okey ORDER BY p.pos) \
), keys AS ( \
  INSERT INTO webhook_ordering_keys AS k \
    (config_id, key, last_seq, last_message_id, prior_message_id, head_seq, head_since, \
     updated_at) \
  SELECT config_id, okey, total, last_in_batch, NULL, 1, now(), now() \
  FROM go WHERE okey IS NOT NULL AND n = 1 \
  ORDER BY config_id, okey \
  ON CONFLICT (config_id, key) DO UPDATE SET \
    prior_message_id = k.last_message_id, \
    last_seq = k.last_seq + EXCLUDED.last_seq, \
    last_message_id = EXCLUDED.last_message_id, \
    head_seq = COALESCE(k.head_seq, k.last_seq + 1), \
    head_since = CASE WHEN k.head_seq IS NULL THEN now() ELSE k.head_since END, \
    updated_at = now() \
  RETURNING config_id, key, last_seq, prior_message_id, head_seq \
), placed AS ( \
  SELECT go.*, keys.last_seq - go.total + go.n AS seq, \
         CASE WHEN go.n = 1 THEN keys.prior_message_id ELSE go.prev_in_batch END AS previous, \
         (keys.last_seq - go.total + go.n) <> keys.head_seq AS waiting \
  FROM go JOIN keys ON keys.config_id = go.config_id AND keys.key = go.okey \
  UNION ALL \
  SELECT go.*, NULL, NULL, false FROM go WHERE go.okey IS NULL \
), outb AS ( \
  INSERT INTO webhook_events \
    (message_id, direction, source, event_type, payload, status, attempts, attempt_base, \
     webhook_config_id, parent_event_id, next_attempt_at, ordering_key, ordering_seq, \
     ordering_previous, waiting_on_key, created_at, updated_at) \
  SELECT message_id, $8, source, event_type, payload, $9, 0, 0, \
         config_id, parent_id, CASE WHEN waiting THEN NULL ELSE now() END, okey, seq, \
         previous, waiting, now(), now() \
  FROM placed ORDER BY config_id, okey, seq \
  RETURNING id, parent_event_id, waiting_on_key \
), grouped AS ( \
  SELECT (row_number() OVER (ORDER BY id) - 1) / $6 + 1 AS n, id FROM outb \
  WHERE NOT waiting_on_key \
), jobs AS ( \
  INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
  SELECT j.id, $4, convert_to(CASE WHEN count(*) = 1 \
           THEN jsonb_build_object('v', 1, 'event_id', min(g.id)) \
           ELSE jsonb_build_object('v', 2, 'event_ids', jsonb_agg(g.id ORDER BY g.id)) END::text, \
         'UTF8'), 'Pending', 0, $5, now(), 0 \
  FROM grouped g JOIN jsonb_array_elements_text($3::jsonb) WITH ORDINALITY AS j(id, n) \
    ON j.n = g.n \
  GROUP BY j.id \
) \
SELECT ins.id, ins.message_id, ins.created_at, ins.updated_at, \
       (SELECT count(*) FROM outb WHERE outb.parent_event_id = ins.id) AS deliveries \
FROM ins";
