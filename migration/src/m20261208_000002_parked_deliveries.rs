//! Deliveries parked behind a failing endpoint's probe (`core::queue::parked`) are `pending`
//! with no `next_attempt_at`. This partial index finds them by configuration: the wake and
//! cancel statements read one configuration's, oldest first, and the maintenance sweep skips
//! from one configuration to the next. It holds only parked rows, so the delivery path's
//! inserts and updates never touch it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX webhook_events_parked ON webhook_events (webhook_config_id, id)
    WHERE status = 'pending' AND next_attempt_at IS NULL;
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS webhook_events_parked;
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
