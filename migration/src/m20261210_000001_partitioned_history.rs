//! Time-partitioned history: `webhook_events` and `webhook_attempts` become range-partitioned,
//! one partition per UTC creation day, so retention drops whole days instead of deleting rows.
//!
//! **The key is the id, not `created_at`.** A new event id is `day << 36 | (sequence mod 2^36)`
//! (`webhook_event_id(created_at)`, the column default with `now()`), where `day` is the UTC day
//! number of its `created_at`; a day's partition holds exactly the ids of that day, and a CHECK
//! on each day partition holds `created_at` to that day. The delivery path finds events by id
//! (`id = ANY($1)` and, for generic plans, which prune only scalar parameters, the batch's
//! smallest and largest id: `wirehook_core::store::IdSpan`), which therefore prunes to the
//! partitions of those ids instead of probing every day, and the primary key stays `(id)`. Attempts are partitioned by `event_id` with the
//! same bounds, so an event's attempts live and die with its day. Ids stay below 2^53 (safe in
//! JavaScript) until day 131,071 (year 2328); one day holds up to 2^36 events, and within a day
//! ids grow with the sequence (it wraps once per 2^36 events).
//!
//! **In place, near-zero downtime.** The existing tables are attached as one partition each,
//! `webhook_events_legacy` / `webhook_attempts_legacy`, bounded `[MINVALUE, 2^36)`: their ids
//! (sequence values) keep their values, nothing is copied, and their indexes become the
//! partitions' indexes. The scan that proves the bound runs first, under a lock that lets writes
//! go on (`VALIDATE CONSTRAINT`); the swap itself is catalog work under an exclusive lock. The
//! legacy partitions are emptied by the old row-by-row retention and dropped once empty (at
//! once, here, on a fresh database).
//!
//! **Uniqueness across days.** PostgreSQL enforces a unique index on a partitioned table only
//! when it contains the partition key, so the unique keys move to each partition:
//! - `message_id`: unique per day; message ids are ULIDs, which carry their creation
//!   millisecond, so two days cannot share one by chance (80 random bits per millisecond).
//! - `(source, dedupe_key)` (provider retries, idempotency keys): unique per day, and the
//!   fan-out also looks in the day before (and the legacy partition): the de-duplication window
//!   is the current and the previous UTC day (24 to 48 hours).
//! - `(webhook_config_id, ordering_key, ordering_seq)`: unique per day; sequences are handed
//!   out under the key's row lock, so this only guards against bugs.
//!
//! The foreign keys between the two tables (`webhook_attempts.event_id`,
//! `webhook_events.parent_event_id`) are dropped: PostgreSQL cannot detach or drop a referenced
//! partition without scanning the referencing table, and retention drops an event's day with
//! its attempts' day. `parent_event_id` of an outbound event points at the inbound event of the
//! same fan-out statement, hence the same day.
//!
//! No DEFAULT partition: a row for a day without its partition fails loudly. The maintenance
//! leader creates [`DAYS_AHEAD`](crate::DAYS_AHEAD) days ahead (`webhook_history_ensure_days`),
//! as every `migrate` run does.

use std::time::Instant;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Functions and the bound check on the existing tables; the scan happens here, while writers
/// go on (`VALIDATE` takes a SHARE UPDATE EXCLUSIVE lock).
const PREPARE: &str = r#"
CREATE OR REPLACE FUNCTION webhook_day_first_id(day date) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (day - DATE '1970-01-01')::bigint << 36 $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'webhook_events_legacy_bound') THEN
        ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_legacy_bound
            CHECK (id < 68719476736) NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'webhook_attempts_legacy_bound') THEN
        ALTER TABLE webhook_attempts ADD CONSTRAINT webhook_attempts_legacy_bound
            CHECK (event_id < 68719476736) NOT VALID;
    END IF;
END $$;
ALTER TABLE webhook_events VALIDATE CONSTRAINT webhook_events_legacy_bound;
ALTER TABLE webhook_attempts VALIDATE CONSTRAINT webhook_attempts_legacy_bound;
"#;

/// The swap, in one transaction under an exclusive lock: every statement is catalog work.
const SWAP: &str = r#"
SET LOCAL lock_timeout = '10s';
LOCK TABLE webhook_events, webhook_attempts IN ACCESS EXCLUSIVE MODE;

-- Ids: plain sequences continue where the identities stopped.
CREATE SEQUENCE webhook_events_seq;
SELECT setval('webhook_events_seq', COALESCE((SELECT max(id) FROM webhook_events), 0) + 1, false);
ALTER TABLE webhook_events ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE webhook_attempts_seq;
SELECT setval('webhook_attempts_seq',
              COALESCE((SELECT max(id) FROM webhook_attempts), 0) + 1, false);
ALTER TABLE webhook_attempts ALTER COLUMN id DROP IDENTITY;

CREATE FUNCTION webhook_event_id(created_at timestamptz) RETURNS bigint
    LANGUAGE sql VOLATILE AS
$$ SELECT webhook_day_first_id((created_at AT TIME ZONE 'UTC')::date)
          + (nextval('webhook_events_seq') & 68719476735) $$;

ALTER TABLE webhook_attempts DROP CONSTRAINT IF EXISTS webhook_attempts_event_id_fkey;
ALTER TABLE webhook_events DROP CONSTRAINT IF EXISTS webhook_events_parent_event_id_fkey;
DROP TRIGGER webhook_events_count_insert ON webhook_events;
DROP TRIGGER webhook_events_count_update ON webhook_events;
DROP TRIGGER webhook_events_count_delete ON webhook_events;

ALTER TABLE webhook_events RENAME TO webhook_events_legacy;
ALTER TABLE webhook_attempts RENAME TO webhook_attempts_legacy;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname AS name, t.relname AS tab
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_class t ON t.oid = i.indrelid
             WHERE t.relname IN ('webhook_events_legacy', 'webhook_attempts_legacy')
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.name,
            regexp_replace(r.name, '^(webhook_events|webhook_attempts)', '\1_legacy'));
    END LOOP;
END $$;

CREATE TABLE webhook_events (LIKE webhook_events_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_legacy_bound;
ALTER TABLE webhook_events ALTER COLUMN id SET DEFAULT webhook_event_id(now());
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_pkey PRIMARY KEY (id);
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_webhook_config_id_fkey
    FOREIGN KEY (webhook_config_id) REFERENCES webhook_configs (id) ON DELETE SET NULL;
CREATE INDEX webhook_events_created ON webhook_events (created_at DESC, id DESC);
CREATE INDEX webhook_events_direction_status_type ON webhook_events
    (direction, status, event_type, created_at DESC, id DESC);
CREATE INDEX webhook_events_status_created ON webhook_events (status, created_at DESC, id DESC);
CREATE INDEX webhook_events_type_created ON webhook_events (event_type, created_at DESC, id DESC);
CREATE INDEX webhook_events_source_created ON webhook_events (source, created_at DESC, id DESC);
CREATE INDEX webhook_events_config_created ON webhook_events (webhook_config_id, created_at DESC, id DESC)
    WHERE webhook_config_id IS NOT NULL;
CREATE INDEX webhook_events_parent ON webhook_events (parent_event_id) WHERE parent_event_id IS NOT NULL;
CREATE INDEX webhook_events_call_id ON webhook_events ((payload ->> 'callId'), created_at DESC, id DESC)
    WHERE (payload ->> 'callId') IS NOT NULL;
CREATE INDEX webhook_events_waiting ON webhook_events
    (webhook_config_id, ordering_key, ordering_seq) WHERE waiting_on_key;
CREATE INDEX webhook_events_parked ON webhook_events (webhook_config_id, id)
    WHERE status = 'pending' AND next_attempt_at IS NULL AND NOT waiting_on_key;

CREATE TABLE webhook_attempts (LIKE webhook_attempts_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (event_id);
ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_legacy_bound;
ALTER TABLE webhook_attempts ALTER COLUMN id SET DEFAULT nextval('webhook_attempts_seq');
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, attempt);

CREATE TRIGGER webhook_events_count_insert AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_count_insert();
CREATE TRIGGER webhook_events_count_update AFTER UPDATE ON webhook_events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_count_update();
CREATE TRIGGER webhook_events_count_delete AFTER DELETE ON webhook_events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_count_delete();

-- The old tables become the legacy partitions (their validated bound spares the scan), or go
-- when they hold nothing.
DO $$
BEGIN
    IF EXISTS (SELECT FROM webhook_events_legacy) OR EXISTS (SELECT FROM webhook_attempts_legacy) THEN
        ALTER TABLE webhook_events ATTACH PARTITION webhook_events_legacy
            FOR VALUES FROM (MINVALUE) TO (68719476736);
        ALTER TABLE webhook_attempts ATTACH PARTITION webhook_attempts_legacy
            FOR VALUES FROM (MINVALUE) TO (68719476736);
    ELSE
        DROP TABLE webhook_attempts_legacy;
        DROP TABLE webhook_events_legacy;
    END IF;
END $$;

-- Creates the partitions of the UTC days `first` to `last` that do not exist yet; returns how
-- many days it created. A partition is made beside the table and attached (a SHARE UPDATE
-- EXCLUSIVE lock on the parent, which lets reads and writes go on) with the per-day unique
-- indexes and the CHECK that holds `created_at` to its day.
CREATE FUNCTION webhook_history_ensure_days(first date, last date) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    day date;
    lo bigint;
    hi bigint;
    ev text;
    at text;
    ix record;
    made integer := 0;
BEGIN
    -- One creator at a time (the maintenance leader, `api migrate`, tests).
    PERFORM pg_advisory_xact_lock(8320845883437641574);
    FOR day IN SELECT generate_series(first, last, interval '1 day')::date LOOP
        lo := webhook_day_first_id(day);
        hi := webhook_day_first_id(day + 1);
        ev := 'webhook_events_p' || to_char(day, 'YYYYMMDD');
        at := 'webhook_attempts_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(ev) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE webhook_events INCLUDING DEFAULTS '
                           'INCLUDING CONSTRAINTS)', ev);
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (id >= %s AND id < %s '
                           'AND created_at >= %L AND created_at < %L)',
                           ev, ev || '_day', lo, hi,
                           day::timestamp AT TIME ZONE 'UTC',
                           (day + 1)::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('CREATE UNIQUE INDEX %I ON %I (message_id)', ev || '_message_id', ev);
            EXECUTE format('CREATE UNIQUE INDEX %I ON %I (source, dedupe_key) '
                           'WHERE dedupe_key IS NOT NULL', ev || '_dedupe_key', ev);
            EXECUTE format('CREATE UNIQUE INDEX %I ON %I '
                           '(webhook_config_id, ordering_key, ordering_seq) '
                           'WHERE ordering_key IS NOT NULL', ev || '_ordering', ev);
            EXECUTE format('ALTER TABLE webhook_events ATTACH PARTITION %I '
                           'FOR VALUES FROM (%s) TO (%s)', ev, lo, hi);
            -- The indexes attaching made are named after the table's: `<index>_pYYYYMMDD`.
            FOR ix IN SELECT ci.relname AS name, cp.relname AS parent
                      FROM pg_index x JOIN pg_class ci ON ci.oid = x.indexrelid
                      JOIN pg_inherits i ON i.inhrelid = x.indexrelid
                      JOIN pg_class cp ON cp.oid = i.inhparent
                      WHERE x.indrelid = ev::regclass
            LOOP
                EXECUTE format('ALTER INDEX %I RENAME TO %I', ix.name,
                               ix.parent || '_p' || to_char(day, 'YYYYMMDD'));
            END LOOP;
            made := made + 1;
        END IF;
        IF to_regclass(at) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE webhook_attempts INCLUDING DEFAULTS '
                           'INCLUDING CONSTRAINTS, PRIMARY KEY (id), '
                           'CHECK (event_id >= %s AND event_id < %s))', at, lo, hi);
            EXECUTE format('ALTER TABLE webhook_attempts ATTACH PARTITION %I '
                           'FOR VALUES FROM (%s) TO (%s)', at, lo, hi);
        END IF;
    END LOOP;
    RETURN made;
END $$;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// Two transactions: the scan (writers go on), then the swap (writers wait).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let prepare = manager.begin().await?;
        prepare.get_connection().execute_unprepared(PREPARE).await?;
        prepare.commit().await?;
        let started = Instant::now();
        let swap = manager.begin().await?;
        swap.get_connection().execute_unprepared(SWAP).await?;
        swap.commit().await?;
        tracing::info!(
            locked_ms = started.elapsed().as_secs_f64() * 1000.0,
            "webhook_events and webhook_attempts are partitioned by day"
        );
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the partitioned history cannot be turned back into single tables in place".into(),
        ))
    }
}
