//! The history's call id search (`GET /api/webhooks/events?callId=`): an index on the payload's
//! `callId`, so finding every event of one call reads only that call's rows.
//!
//! `payload` holds what outbound deliveries carry as `data` (the normalized form for inbound
//! provider events, the published payload for platform events), so one expression covers both
//! directions. Partial: rows without a `callId` (contacts, campaigns, rejected requests) add
//! nothing to it; a query `payload ->> 'callId' = $1` implies the predicate, so the planner
//! uses it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX webhook_events_call_id ON webhook_events ((payload ->> 'callId'), created_at DESC, id DESC)
    WHERE (payload ->> 'callId') IS NOT NULL;
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS webhook_events_call_id;
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
