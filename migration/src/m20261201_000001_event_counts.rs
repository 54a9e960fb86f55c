//! Exact history totals without counting `webhook_events`: per-day counts by every history filter
//! key, kept by triggers in the transactions that change the events.
//!
//! Writers never wait on each other for them: each statement that inserts, updates or deletes
//! events appends its net changes to `webhook_event_count_deltas` (no key, no index), and the
//! worker's maintenance leader folds those into `webhook_event_counts` every few seconds
//! (`webhook_event_counts_fold()`). In any snapshot, counts plus deltas are exact.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE webhook_event_counts (
    day               DATE   NOT NULL,
    direction         TEXT   NOT NULL,
    source            TEXT   NOT NULL,
    event_type        TEXT   NOT NULL,
    status            TEXT   NOT NULL,
    -- 0: no configuration (inbound events, or one whose configuration was deleted)
    webhook_config_id BIGINT NOT NULL,
    n                 BIGINT NOT NULL,
    PRIMARY KEY (day, direction, source, event_type, status, webhook_config_id)
);

CREATE TABLE webhook_event_count_deltas (
    day               DATE   NOT NULL,
    direction         TEXT   NOT NULL,
    source            TEXT   NOT NULL,
    event_type        TEXT   NOT NULL,
    status            TEXT   NOT NULL,
    webhook_config_id BIGINT NOT NULL,
    n                 BIGINT NOT NULL
);

CREATE FUNCTION webhook_events_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_event_count_deltas
    SELECT (created_at AT TIME ZONE 'UTC')::date, direction, source, event_type, status,
           COALESCE(webhook_config_id, 0), count(*)
    FROM new_rows
    GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_events_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_event_count_deltas
    SELECT (created_at AT TIME ZONE 'UTC')::date, direction, source, event_type, status,
           COALESCE(webhook_config_id, 0), -count(*)
    FROM old_rows
    GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$;

-- Only changed keys produce deltas: an update of attempts or response data writes none.
CREATE FUNCTION webhook_events_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_event_count_deltas
    SELECT day, direction, source, event_type, status, config, sum(n)
    FROM (
        SELECT (created_at AT TIME ZONE 'UTC')::date AS day, direction, source, event_type,
               status, COALESCE(webhook_config_id, 0) AS config, 1 AS n
        FROM new_rows
        UNION ALL
        SELECT (created_at AT TIME ZONE 'UTC')::date, direction, source, event_type,
               status, COALESCE(webhook_config_id, 0), -1
        FROM old_rows
    ) AS change
    GROUP BY 1, 2, 3, 4, 5, 6
    HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_events_count_insert AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_count_insert();
CREATE TRIGGER webhook_events_count_update AFTER UPDATE ON webhook_events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_count_update();
CREATE TRIGGER webhook_events_count_delete AFTER DELETE ON webhook_events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_count_delete();

-- Moves the pending deltas into the counts; returns how many delta rows it folded.
CREATE FUNCTION webhook_event_counts_fold() RETURNS bigint LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM webhook_event_count_deltas RETURNING *
    ), summed AS (
        SELECT day, direction, source, event_type, status, webhook_config_id, sum(n) AS n
        FROM moved
        GROUP BY 1, 2, 3, 4, 5, 6
    ), applied AS (
        INSERT INTO webhook_event_counts AS c
        SELECT * FROM summed
        ON CONFLICT (day, direction, source, event_type, status, webhook_config_id)
        DO UPDATE SET n = c.n + excluded.n
    )
    SELECT count(*) FROM moved;
$$;

-- Existing events, counted while writers wait, so the counts start exact.
LOCK TABLE webhook_events IN SHARE MODE;
INSERT INTO webhook_event_counts
SELECT (created_at AT TIME ZONE 'UTC')::date, direction, source, event_type, status,
       COALESCE(webhook_config_id, 0), count(*)
FROM webhook_events
GROUP BY 1, 2, 3, 4, 5, 6;
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS webhook_events_count_insert ON webhook_events;
DROP TRIGGER IF EXISTS webhook_events_count_update ON webhook_events;
DROP TRIGGER IF EXISTS webhook_events_count_delete ON webhook_events;
DROP FUNCTION IF EXISTS webhook_events_count_insert();
DROP FUNCTION IF EXISTS webhook_events_count_update();
DROP FUNCTION IF EXISTS webhook_events_count_delete();
DROP FUNCTION IF EXISTS webhook_event_counts_fold();
DROP TABLE IF EXISTS webhook_event_count_deltas;
DROP TABLE IF EXISTS webhook_event_counts;
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
