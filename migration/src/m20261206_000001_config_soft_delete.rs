//! Deleting a configuration keeps its row (marked `deleted_at`, made `inactive`), so its events
//! keep their `webhook_config_id` and the history by configuration still finds them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE webhook_configs ADD COLUMN deleted_at TIMESTAMPTZ;
ALTER TABLE webhook_configs ADD CONSTRAINT webhook_configs_deleted_is_inactive
    CHECK (deleted_at IS NULL OR status = 'inactive');
"#;

const DOWN: &str = r#"
ALTER TABLE webhook_configs DROP CONSTRAINT IF EXISTS webhook_configs_deleted_is_inactive;
ALTER TABLE webhook_configs DROP COLUMN IF EXISTS deleted_at;
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
