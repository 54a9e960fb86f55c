//! Ordered delivery per key (`ordering` on a configuration; `core::queue::ordered`).
//!
//! - `webhook_configs.ordering`: `{key, onStuck, maxHoldSeconds}`, absent for unordered
//!   configurations.
//! - `webhook_events.ordering_key/_seq/_previous`: an ordered delivery's key value, its place in
//!   the key (accept order, from 1) and the message id of the event before it; all NULL on
//!   every other row. `waiting_on_key`: pending behind the key's head, with no job.
//! - `webhook_ordering_keys`: one row per (configuration, key value) ever ordered: the last
//!   sequence handed out and which sequence holds the key (`head_seq`, NULL when idle). Its row
//!   lock is the per-key lock: the fan-out appends under it, the settle of a head releases the
//!   next under it.
//! - `webhook_events_parked` is redefined without the events waiting on their key, so the
//!   failing-endpoint wake, cancel and sweep never see them.
//!
//! The new event columns are only ever set on ordered deliveries and every new index is partial
//! on them, so unordered rows add no index entries and their updates stay HOT-eligible as before.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE webhook_configs
    ADD COLUMN ordering JSONB CHECK (ordering IS NULL OR jsonb_typeof(ordering) = 'object');

ALTER TABLE webhook_events
    ADD COLUMN ordering_key      TEXT,
    ADD COLUMN ordering_seq      BIGINT,
    ADD COLUMN ordering_previous TEXT,
    ADD COLUMN waiting_on_key    BOOLEAN NOT NULL DEFAULT false,
    ADD CONSTRAINT webhook_events_ordering_complete
        CHECK ((ordering_key IS NULL) = (ordering_seq IS NULL)),
    ADD CONSTRAINT webhook_events_waiting_is_ordered
        CHECK (NOT waiting_on_key OR ordering_key IS NOT NULL);

-- One event per place in a key; also how a key's head is found from its sequence.
CREATE UNIQUE INDEX webhook_events_ordering ON webhook_events
    (webhook_config_id, ordering_key, ordering_seq) WHERE ordering_key IS NOT NULL;
-- The events waiting behind their key's head: the next one to release, and the ones to cancel.
CREATE INDEX webhook_events_waiting ON webhook_events
    (webhook_config_id, ordering_key, ordering_seq) WHERE waiting_on_key;

DROP INDEX IF EXISTS webhook_events_parked;
CREATE INDEX webhook_events_parked ON webhook_events (webhook_config_id, id)
    WHERE status = 'pending' AND next_attempt_at IS NULL AND NOT waiting_on_key;

CREATE TABLE webhook_ordering_keys (
    config_id        BIGINT NOT NULL REFERENCES webhook_configs (id) ON DELETE CASCADE,
    key              TEXT NOT NULL,
    -- the sequence of the last event accepted for the key, and its message id
    last_seq         BIGINT NOT NULL CHECK (last_seq >= 1),
    last_message_id  TEXT NOT NULL,
    -- `last_message_id` before the latest append: what the fan-out reads back as the
    -- `previousId` of the first event it appended
    prior_message_id TEXT,
    -- the sequence of the event holding the key (NULL: idle), and since when it holds it
    head_seq         BIGINT CHECK (head_seq IS NULL OR head_seq BETWEEN 1 AND last_seq),
    head_since       TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (config_id, key)
);
-- The keys held by a head, oldest first: the sweep and the blocked-keys gauge read only these.
CREATE INDEX webhook_ordering_keys_held ON webhook_ordering_keys (head_since)
    WHERE head_seq IS NOT NULL;
-- Idle keys by age, for retention.
CREATE INDEX webhook_ordering_keys_idle ON webhook_ordering_keys (updated_at)
    WHERE head_seq IS NULL;
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS webhook_ordering_keys;
DROP INDEX IF EXISTS webhook_events_parked;
CREATE INDEX webhook_events_parked ON webhook_events (webhook_config_id, id)
    WHERE status = 'pending' AND next_attempt_at IS NULL;
DROP INDEX IF EXISTS webhook_events_waiting;
DROP INDEX IF EXISTS webhook_events_ordering;
ALTER TABLE webhook_events
    DROP CONSTRAINT IF EXISTS webhook_events_waiting_is_ordered,
    DROP CONSTRAINT IF EXISTS webhook_events_ordering_complete,
    DROP COLUMN IF EXISTS waiting_on_key,
    DROP COLUMN IF EXISTS ordering_previous,
    DROP COLUMN IF EXISTS ordering_seq,
    DROP COLUMN IF EXISTS ordering_key;
ALTER TABLE webhook_configs DROP COLUMN IF EXISTS ordering;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
