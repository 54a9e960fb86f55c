//! A replica while PostgreSQL goes away and comes back: it resumes by itself, and an attempt
//! whose outcome could not be recorded is made again rather than lost or mis-recorded. Each test
//! runs a replica (with the binary's pool) on a throwaway cluster of its own that it stops and
//! starts, and delivers to a real receiver on 127.0.0.1.

use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, PgPool};
use sea_orm::{DatabaseConnection, TransactionTrait};
use wirehook_core::process;
use wirehook_core::queue::{self, NewDelivery};
use wirehook_testkit::cluster::{Cluster, Durability};
use wirehook_testkit::receiver::{Hold, Receiver, Reply};
use wirehook_testkit::replica::{self, Replica};

/// A migrated throwaway cluster and a pool on it built as the `worker` binary builds its own.
struct Database {
    cluster: Cluster,
    db: DatabaseConnection,
}

impl Database {
    async fn start() -> Self {
        let cluster = Cluster::start(Durability::Fast)
            .await
            .expect("throwaway cluster");
        let db = process::connect(&cluster.url(), 8)
            .await
            .expect("connect like the binary");
        migration::migrate(&db).await.expect("migrate");
        Self { cluster, db }
    }

    fn pool(&self) -> PgPool {
        self.db.get_postgres_connection_pool().clone()
    }

    async fn stop(&self) {
        self.cluster.stop().await.expect("stop the cluster");
    }

    async fn resume(&self) {
        self.cluster
            .resume()
            .await
            .expect("start the cluster again");
    }

    /// A configuration delivering to `url` with `max_attempts` attempts 1 s apart.
    async fn config(&self, url: &str, max_attempts: u32) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO webhook_configs (name, url, secret, event_types, status, retry_config) \
             VALUES ('outage test', $1, 'webhooksecret123', '[\"call.completed\"]', 'active', \
                     jsonb_build_object('maxAttempts', $2::int, 'initialDelay', 1, \
                                        'maxDelay', 1, 'backoffFactor', 1)) \
             RETURNING id",
        )
        .bind(url)
        .bind(i32::try_from(max_attempts).expect("small"))
        .fetch_one(&self.pool())
        .await
        .expect("insert config")
    }

    /// Queues one delivery through the path the api uses; returns its event id and webhook-id.
    async fn enqueue(&self, config_id: i64) -> (i64, String) {
        let txn = self.db.begin().await.expect("begin");
        let created = queue::enqueue(
            &txn,
            vec![NewDelivery {
                config_id: entity::ConfigId(config_id),
                source: entity::Source::Platform,
                event_type: "call.completed".into(),
                payload: serde_json::json!({ "callId": "call-outage" }),
                parent_event_id: None,
            }],
        )
        .await
        .expect("enqueue");
        txn.commit().await.expect("commit");
        let e = created.into_iter().next().expect("one delivery");
        (e.event_id.0, e.message_id)
    }

    /// Waits until the event leaves `pending`; returns its status and attempt count.
    async fn settled(&self, id: i64, limit: Duration) -> (String, i32) {
        let deadline = Instant::now() + limit;
        loop {
            // The pool may still be reconnecting right after a restart.
            let row = sqlx::query_as::<_, (String, i32)>(
                "SELECT status, attempts FROM webhook_events WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&self.pool())
            .await;
            if let Ok(row) = row
                && row.0 != "pending"
            {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "event {id} still pending after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A worker replica (`runtime::run`) on `database`, with a 1 s heartbeat (2 s lease).
fn start_replica(database: &Database) -> Replica {
    let settings = replica::settings(
        &database.cluster.url(),
        &[
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_HEARTBEAT_SECS", "1"),
            ("WORKER_POLL_INTERVAL_MS", "200"),
            ("WORKER_SHUTDOWN_GRACE_SECS", "1"),
            ("DELIVERY_TIMEOUT_SECS", "5"),
        ],
    )
    .expect("worker settings");
    Replica::start(database.db.clone(), settings).expect("replica")
}

/// Stops `replica`; `run` must return `Ok` within 30 s.
async fn stop(replica: Replica) {
    replica
        .stop(Duration::from_secs(30))
        .await
        .expect("run returns Ok after shutdown");
}

/// A receiver on 127.0.0.1 that answers `status` to everything.
async fn receiver(status: u16) -> Receiver {
    Receiver::always(Reply::Status(status))
        .await
        .expect("receiver")
}

/// How many times `id` was received.
fn times(receiver: &Receiver, id: &str) -> u32 {
    receiver.seen(id).map_or(0, |seen| seen.count)
}

/// Stops the cluster once the first attempt has arrived and before it is answered (`hold`,
/// taken before anything was sent, keeps the answer back meanwhile), so that the attempt's
/// answer cannot be recorded.
async fn stop_database_before_the_first_answer(
    database: &Database,
    receiver: &Receiver,
    hold: Hold,
) {
    let first = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert!(!first.is_empty(), "no attempt arrived");
    database
        .cluster
        .stop()
        .await
        .expect("stop the cluster mid-attempt");
    drop(hold);
}

/// Waits until the cluster refuses connections.
async fn wait_until_down(database: &Database) {
    let port = database.cluster.port();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "PostgreSQL did not go down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_replica_resumes_delivering_after_postgresql_restarts() {
    let database = Database::start().await;
    let receiver = receiver(200).await;
    let config = database.config(&receiver.url("/hook"), 3).await;
    let replica = start_replica(&database);
    tokio::time::sleep(Duration::from_secs(1)).await;

    database.stop().await;
    // Long enough for the replica's apalis worker to fail and back off at least once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    database.resume().await;
    let resumed = Instant::now();

    let (event, message_id) = database.enqueue(config).await;
    let (status, attempts) = database.settled(event, Duration::from_secs(40)).await;
    eprintln!(
        "delivered {:?} after PostgreSQL returned",
        resumed.elapsed()
    );
    assert_eq!((status.as_str(), attempts), ("delivered", 1));
    assert_eq!(times(&receiver, &message_id), 1);
    stop(replica).await;
}

#[tokio::test]
async fn a_2xx_that_could_not_be_recorded_is_sent_again_and_then_recorded_delivered() {
    let database = Database::start().await;
    let receiver = receiver(200).await;
    let hold = receiver.hold();
    let config = database.config(&receiver.url("/hook"), 3).await;
    let replica = start_replica(&database);
    let (event, message_id) = database.enqueue(config).await;

    stop_database_before_the_first_answer(&database, &receiver, hold).await;
    wait_until_down(&database).await;
    // Down for longer than a pool waits for a connection, so the answer cannot be recorded late.
    tokio::time::sleep(wirehook_core::process::ACQUIRE_TIMEOUT + Duration::from_secs(1)).await;
    database.resume().await;

    let (status, attempts) = database.settled(event, Duration::from_secs(40)).await;
    assert_eq!((status.as_str(), attempts), ("delivered", 1));
    // At least once: the unrecorded 200 was followed by a second send of the same webhook-id.
    assert!(times(&receiver, &message_id) >= 2, "sent only once");
    stop(replica).await;
}

#[tokio::test]
async fn a_5xx_that_could_not_be_recorded_never_ends_delivered() {
    let database = Database::start().await;
    let receiver = receiver(500).await;
    let hold = receiver.hold();
    let config = database.config(&receiver.url("/hook"), 2).await;
    let replica = start_replica(&database);
    let (event, message_id) = database.enqueue(config).await;

    stop_database_before_the_first_answer(&database, &receiver, hold).await;
    wait_until_down(&database).await;
    // Down for longer than a pool waits for a connection, so the answer cannot be recorded late.
    tokio::time::sleep(wirehook_core::process::ACQUIRE_TIMEOUT + Duration::from_secs(1)).await;
    database.resume().await;

    let (status, attempts) = database.settled(event, Duration::from_secs(40)).await;
    assert_eq!((status.as_str(), attempts), ("failed", 2));
    // Two recorded attempts, plus the one whose answer was lost with the database.
    assert!(
        times(&receiver, &message_id) >= 3,
        "{}",
        times(&receiver, &message_id)
    );
    stop(replica).await;
}
