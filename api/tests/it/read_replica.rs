//! `DATABASE_READ_URL`: history lists from a real streaming standby (`pg_basebackup -R` of a
//! throwaway primary), everything that must see its own writes from the primary.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use wirehook_testkit::cluster::{self, Cluster, Durability};

use crate::common::{NewEvent, TestApp};

/// A lag bound no test reaches: the standby serves lists however far it is behind.
const ANY_LAG: Duration = Duration::from_secs(3600);

/// How long a test waits for a state it expects to come (not a timing assertion: the state is
/// reached far sooner, and the wait only bounds a broken run).
const EVENTUALLY: Duration = Duration::from_secs(60);

/// A primary and its hot standby, with the app reading lists from the standby.
struct Replicated {
    app: TestApp,
    primary: Cluster,
    standby: Cluster,
}

impl Replicated {
    async fn start(max_lag: Duration) -> Self {
        wirehook_testkit::init_logs();
        let primary = Cluster::start(Durability::Fast).await.expect("primary");
        let standby = primary.start_standby().await.expect("standby");
        let app = TestApp::spawn_with_standby(&primary, &standby, max_lag).await;
        Self {
            app,
            primary,
            standby,
        }
    }

    /// The app's database on the standby (superuser: may pause replay).
    async fn standby_db(&self) -> DatabaseConnection {
        let url = self.standby.url();
        Database::connect(url.as_str()).await.expect("standby")
    }

    async fn pause_replay(&self) {
        let db = self.standby_db().await;
        db.execute_unprepared("SELECT pg_wal_replay_pause()")
            .await
            .expect("pause replay");
    }

    async fn resume_replay(&self) {
        let db = self.standby_db().await;
        db.execute_unprepared("SELECT pg_wal_replay_resume()")
            .await
            .expect("resume replay");
    }

    async fn caught_up(&self) {
        cluster::wait_for_replay(&self.primary, &self.standby)
            .await
            .expect("the standby catches up");
    }

    async fn config_ids(&self) -> Vec<i64> {
        let (status, body) = self.app.get("/api/webhooks/config").await;
        assert_eq!(status, 200, "{body}");
        ids(&body["webhooks"])
    }

    async fn event_ids(&self) -> Vec<i64> {
        let (status, body) = self.app.get("/api/webhooks/events?limit=100").await;
        assert_eq!(status, 200, "{body}");
        ids(&body["events"])
    }

    async fn publish(&self) -> i64 {
        let (status, body) = self
            .app
            .post(
                "/api/webhooks/events",
                json!({"eventType": "call.completed", "payload": {"callId": "CA-replica"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["event"]["id"].as_i64().expect("event id")
    }
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|item| item["id"].as_i64())
        .collect()
}

/// Backends of the server at `url` whose last statement matches `pattern` (`LIKE`), other
/// than the asking one; with `application_name`, only the backends of that name.
async fn backends_that_ran(url: &str, pattern: &str, application_name: Option<&str>) -> i64 {
    let db = Database::connect(url).await.expect("connect");
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND query LIKE $1 \
               AND ($2::text IS NULL OR application_name = $2)",
            [pattern.into(), application_name.map(str::to_owned).into()],
        ))
        .await
        .expect("pg_stat_activity")
        .expect("a row");
    row.try_get("", "n").expect("count")
}

/// The events list's page query, as sea-orm writes it.
const EVENT_LIST: &str = r#"%ORDER BY "webhook_events"."created_at" DESC%"#;
/// The configurations list's query.
const CONFIG_LIST: &str =
    r#"%FROM "webhook_configs" WHERE "webhook_configs"."deleted_at" IS NULL ORDER BY%"#;

#[tokio::test]
async fn history_lists_are_read_from_the_standby_and_never_from_the_primary() {
    let r = Replicated::start(ANY_LAG).await;
    let config = r.app.create_config(json!({"filters": null})).await;
    let event = r.publish().await;
    r.caught_up().await;

    let standby = r
        .standby
        .url_of(r.app.database_url().rsplit('/').next().unwrap());
    let history = Some(wirehook_api::read_replica::APPLICATION_NAME);
    // Each checked right after its request: the read pool's next request may reuse the backend.
    assert!(
        r.config_ids()
            .await
            .contains(&config["id"].as_i64().unwrap())
    );
    assert!(backends_that_ran(&standby, CONFIG_LIST, history).await > 0);
    assert!(r.event_ids().await.contains(&event));
    assert!(backends_that_ran(&standby, EVENT_LIST, history).await > 0);
    assert_eq!(
        backends_that_ran(r.app.database_url(), EVENT_LIST, None).await,
        0
    );
    assert_eq!(
        backends_that_ran(r.app.database_url(), CONFIG_LIST, None).await,
        0
    );
}

#[tokio::test]
async fn a_lagging_standby_never_makes_a_just_created_object_404() {
    let r = Replicated::start(ANY_LAG).await;
    r.pause_replay().await;

    let config = r.app.create_config(json!({"filters": null})).await;
    let config_id = config["id"].as_i64().unwrap();
    let event = r.publish().await;

    let (status, body) = r
        .app
        .get(&format!("/api/webhooks/config/{config_id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = r.app.get(&format!("/api/webhooks/events/{event}")).await;
    assert_eq!(status, 200, "{body}");
    // The lists come from the paused standby: they do not show them yet.
    assert!(!r.config_ids().await.contains(&config_id));
    assert!(!r.event_ids().await.contains(&event));

    r.resume_replay().await;
    r.caught_up().await;
    assert!(r.config_ids().await.contains(&config_id));
    assert!(r.event_ids().await.contains(&event));
}

#[tokio::test]
async fn a_lagging_standby_never_shows_a_just_retried_event_as_it_was() {
    let r = Replicated::start(ANY_LAG).await;
    let config = r.app.create_config(json!({"filters": null})).await;
    let failed = r
        .app
        .insert_event(NewEvent::outbound(
            "call.completed",
            config["id"].as_i64().unwrap(),
            entity::EventStatus::Failed,
        ))
        .await;
    r.caught_up().await;
    r.pause_replay().await;

    let (status, body) = r
        .app
        .post(&format!("/api/webhooks/events/{failed}/retry"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["status"], "pending");

    let (status, body) = r.app.get(&format!("/api/webhooks/events/{failed}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["status"], "pending", "{body}");
    // The list, from the paused standby, still has it failed.
    let (_, list) = r.app.get("/api/webhooks/events?status=failed").await;
    assert_eq!(ids(&list["events"]), vec![failed]);
}

#[tokio::test]
async fn lists_are_read_from_the_primary_while_the_standby_lags_past_the_bound() {
    let r = Replicated::start(Duration::from_secs(1)).await;
    r.pause_replay().await;
    let config = r.app.create_config(json!({"filters": null})).await;
    let config_id = config["id"].as_i64().unwrap();

    // Once the last replayed commit is more than a second old, the list goes to the primary.
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !r.config_ids().await.contains(&config_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lists never left the paused standby"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn history_is_answered_from_the_primary_while_the_standby_is_down_and_from_the_standby_once_it_is_back()
 {
    let r = Replicated::start(ANY_LAG).await;
    assert!(r.config_ids().await.is_empty());
    r.standby.stop().await.expect("stop the standby");

    let config = r.app.create_config(json!({"filters": null})).await;
    let config_id = config["id"].as_i64().unwrap();
    let event = r.publish().await;
    assert!(r.config_ids().await.contains(&config_id));
    assert!(r.event_ids().await.contains(&event));

    // Back: once the probe reaches it, the lists are read from it again (every backend of the
    // restarted standby is new, so one of the read pool that ran the list ran it since).
    r.standby.resume().await.expect("start the standby again");
    r.caught_up().await;
    let standby = r
        .standby
        .url_of(r.app.database_url().rsplit('/').next().unwrap());
    let history = Some(wirehook_api::read_replica::APPLICATION_NAME);
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        assert!(r.config_ids().await.contains(&config_id));
        if backends_that_ran(&standby, CONFIG_LIST, history).await > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lists never came back to the standby"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
