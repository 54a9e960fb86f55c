//! Schema migrations for wirehook: its tables and the apalis job storage.
//!
//! [`migrate`] is what `api migrate` runs; it is safe to run twice and from several hosts at
//! once, because every run holds one PostgreSQL advisory lock while it works.

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, sqlx};

mod m20261129_000001_create_tables;
mod m20261201_000001_event_counts;
mod m20261206_000001_config_soft_delete;
mod m20261207_000001_event_call_id;
mod m20261208_000002_parked_deliveries;
mod m20261209_000001_ordered_delivery;
mod m20261210_000001_partitioned_history;

/// Advisory lock key shared by every `migrate` run ("wirehook" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7769_7265_686f_6f6b;

/// Days of history partitions that exist ahead of today: `api migrate` and the maintenance
/// leader create them (`webhook_history_ensure_days`), so inserts never meet a missing day
/// while a leader runs at least once a week.
pub const DAYS_AHEAD: i32 = 7;

/// Bits of an event id below its UTC creation day (`id = day << 36 | sequence`): each day's
/// partition holds the ids `[day << 36, (day + 1) << 36)`.
pub const DAY_SHIFT: u32 = 36;

/// Ids below this are in the legacy partitions (the tables as they were before partitioning).
pub const LEGACY_ID_BOUND: i64 = 1 << DAY_SHIFT;

/// Migrations before the partitioned history (tests and the bench fill such a database and
/// then migrate it in place).
pub const BEFORE_PARTITIONING: u32 = 6;

/// The sea-orm migrator holding wirehook's own tables.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_tables::Migration),
            Box::new(m20261201_000001_event_counts::Migration),
            Box::new(m20261206_000001_config_soft_delete::Migration),
            Box::new(m20261207_000001_event_call_id::Migration),
            Box::new(m20261208_000002_parked_deliveries::Migration),
            Box::new(m20261209_000001_ordered_delivery::Migration),
            Box::new(m20261210_000001_partitioned_history::Migration),
        ]
    }
}

/// Applies every pending migration and the apalis storage schema, serialized across hosts.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let pool = db.get_postgres_connection_pool();
    // The lock lives on one dedicated session; migrations run on other pool connections.
    let mut lock = pool.acquire().await.map_err(sqlx_err)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *lock)
        .await
        .map_err(sqlx_err)?;
    let result = apply(db).await;
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *lock)
        .await;
    result?;
    unlock.map_err(sqlx_err)?;
    Ok(())
}

async fn apply(db: &DatabaseConnection) -> Result<(), DbErr> {
    // apalis-postgres needs these contrib extensions; create them first so the error is clear.
    db.execute_unprepared(
        "CREATE EXTENSION IF NOT EXISTS pgcrypto; CREATE EXTENSION IF NOT EXISTS hstore;",
    )
    .await?;
    Migrator::up(db, None).await?;
    // Today's history partitions and the days ahead (the maintenance leader keeps them ahead).
    db.execute_unprepared(&format!(
        "SELECT webhook_history_ensure_days((now() AT TIME ZONE 'UTC')::date, \
                                            (now() AT TIME ZONE 'UTC')::date + {DAYS_AHEAD})"
    ))
    .await?;
    apalis_postgres::PostgresStorage::<()>::setup(db.get_postgres_connection_pool())
        .await
        .map_err(|e| DbErr::Migration(format!("apalis storage setup failed: {e}")))?;
    // Ours, on apalis' table (which exists only now): the maintenance leader deletes finished
    // jobs by age (`wirehook_core::queue::finished`, whose predicate this spells exactly).
    db.execute_unprepared(
        "CREATE INDEX IF NOT EXISTS apalis_jobs_finished ON apalis.jobs (done_at) \
         WHERE (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
    )
    .await?;
    Ok(())
}

/// Names of wirehook migrations not yet applied (empty when the database is ready).
pub async fn pending(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

fn sqlx_err(e: sqlx::Error) -> DbErr {
    DbErr::Custom(format!("migration lock: {e}"))
}
