//! `migrate` is idempotent and safe to run concurrently.

use sea_orm::{ConnectionTrait, Statement};

use crate::common::{POOL, fresh_database};

async fn table_count(db: &sea_orm::DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*)::bigint AS n FROM information_schema.tables \
             WHERE table_schema IN ('public', 'apalis')",
        ))
        .await
        .expect("query")
        .expect("row");
    row.try_get::<i64>("", "n").expect("n")
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let database = fresh_database().await;
    let db = database.connect(POOL).await.expect("connect");
    migration::migrate(&db).await.expect("first run");
    let tables = table_count(&db).await;
    migration::migrate(&db).await.expect("second run");
    assert_eq!(table_count(&db).await, tables);
    assert!(migration::pending(&db).await.expect("pending").is_empty());
}

#[tokio::test]
async fn concurrent_migrations_from_several_hosts_all_succeed() {
    let database = fresh_database().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let db = database.connect(POOL).await.expect("connect");
        runs.push(tokio::spawn(async move { migration::migrate(&db).await }));
    }
    for run in runs {
        run.await.expect("join").expect("migrate");
    }
    let db = database.connect(POOL).await.expect("connect");
    assert!(migration::pending(&db).await.expect("pending").is_empty());
    db.execute_unprepared(
        "SELECT 1 FROM webhook_configs, webhook_events, webhook_attempts, apalis.jobs LIMIT 1",
    )
    .await
    .expect("all tables exist");
}

#[tokio::test]
async fn a_fresh_database_reports_pending_migrations() {
    let database = fresh_database().await;
    let db = database.connect(POOL).await.expect("connect");
    assert!(!migration::pending(&db).await.expect("pending").is_empty());
}
