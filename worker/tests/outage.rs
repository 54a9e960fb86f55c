//! A replica while PostgreSQL goes away and comes back: it resumes by itself, and an attempt
//! whose outcome could not be recorded is made again rather than lost or mis-recorded. Each test
//! runs a replica (with the binary's pool) on a throwaway cluster of its own that it stops and
//! starts, and delivers to a real receiver on 127.0.0.1.

#[allow(dead_code)]
#[path = "../../harness/src/cluster.rs"]
mod cluster;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, handler, post};
use sea_orm::sqlx::{self, PgPool};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wirehook_core::engine::Engine;
use wirehook_core::process;
use wirehook_core::queue::{self, NewDelivery};
use wirehook_core::settings::WorkerSettings;
use wirehook_worker::runtime;

use cluster::{Cluster, Durability};

/// A migrated throwaway cluster and a pool on it built as the `worker` binary builds its own.
struct Database {
    cluster: Arc<Cluster>,
    db: DatabaseConnection,
}

impl Database {
    async fn start() -> Self {
        let cluster = tokio::task::spawn_blocking(|| Cluster::start(Durability::Fast))
            .await
            .expect("blocking task")
            .expect("throwaway cluster");
        let db = process::connect(&cluster.url(), 8)
            .await
            .expect("connect like the binary");
        migration::migrate(&db).await.expect("migrate");
        Self {
            cluster: Arc::new(cluster),
            db,
        }
    }

    fn pool(&self) -> PgPool {
        self.db.get_postgres_connection_pool().clone()
    }

    async fn stop(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .expect("blocking task")
            .expect("stop the cluster");
    }

    async fn resume(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.resume())
            .await
            .expect("blocking task")
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
struct Replica {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), runtime::RuntimeError>>,
}

impl Replica {
    fn start(database: &Database) -> Self {
        let url = database.cluster.url();
        let settings = WorkerSettings::from_lookup(move |k| match k {
            "DATABASE_URL" => Some(url.clone()),
            "METRICS_ADDR" => Some("127.0.0.1:0".into()),
            "WORKER_CONCURRENCY" => Some("4".into()),
            "WORKER_HEARTBEAT_SECS" => Some("1".into()),
            "WORKER_POLL_INTERVAL_MS" => Some("200".into()),
            "WORKER_SHUTDOWN_GRACE_SECS" => Some("1".into()),
            "DELIVERY_TIMEOUT_SECS" => Some("5".into()),
            _ => None,
        })
        .expect("worker settings");
        let engine =
            Arc::new(Engine::from_settings(database.db.clone(), &settings).expect("engine"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            runtime::run(engine, &settings, async {
                let _ = rx.await;
            })
            .await
        });
        Self {
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}

/// Runs once, on the first request, before it is answered.
type FirstRequest = Box<dyn FnOnce() -> JoinHandle<()> + Send>;

/// What the receiver shares with its handler.
struct ReceiverState {
    status: u16,
    seen: Mutex<Vec<String>>,
    first: Mutex<Option<FirstRequest>>,
}

/// A receiver on 127.0.0.1 that answers `status` to everything and records every
/// `webhook-id`; on its first request it runs `first` to completion before answering.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    _server: JoinHandle<()>,
}

impl Receiver {
    async fn start(status: u16, first: Option<FirstRequest>) -> Self {
        #[handler]
        async fn receive(req: &Request, state: Data<&Arc<ReceiverState>>) -> Response {
            let id = req.header("webhook-id").unwrap_or("missing").to_owned();
            state.seen.lock().expect("receiver log").push(id);
            let first = state.first.lock().expect("first hook").take();
            if let Some(first) = first {
                let _ = first().await;
            }
            Response::builder()
                .status(poem::http::StatusCode::from_u16(state.status).expect("status"))
                .body("answer")
        }

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        drop(listener);
        let state = Arc::new(ReceiverState {
            status,
            seen: Mutex::new(Vec::new()),
            first: Mutex::new(first),
        });
        let app = Route::new().at("/hook", post(receive)).data(state.clone());
        let server = tokio::spawn(async move {
            let _ = poem::Server::new(poem::listener::TcpListener::bind(addr))
                .run(app)
                .await;
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the receiver did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            url: format!("http://{addr}/hook"),
            state,
            _server: server,
        }
    }

    /// How many times `id` was received.
    fn times(&self, id: &str) -> usize {
        let seen = self.state.seen.lock().expect("receiver log");
        seen.iter().filter(|s| *s == id).count()
    }
}

/// A first-request hook that stops `cluster`, so the attempt's answer cannot be recorded.
fn stop_database_then_answer(cluster: &Arc<Cluster>) -> FirstRequest {
    let cluster = cluster.clone();
    Box::new(move || {
        tokio::task::spawn_blocking(move || {
            cluster.stop().expect("stop the cluster mid-attempt");
        })
    })
}

/// Waits until the cluster refuses connections (the receiver's hook stopped it).
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
    let receiver = Receiver::start(200, None).await;
    let config = database.config(&receiver.url, 3).await;
    let replica = Replica::start(&database);
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
    assert_eq!(receiver.times(&message_id), 1);
    replica.stop().await;
}

#[tokio::test]
async fn a_2xx_that_could_not_be_recorded_is_sent_again_and_then_recorded_delivered() {
    let database = Database::start().await;
    let receiver = Receiver::start(200, Some(stop_database_then_answer(&database.cluster))).await;
    let config = database.config(&receiver.url, 3).await;
    let replica = Replica::start(&database);
    let (event, message_id) = database.enqueue(config).await;

    wait_until_down(&database).await;
    // Down for longer than a pool waits for a connection, so the answer cannot be recorded late.
    tokio::time::sleep(wirehook_core::process::ACQUIRE_TIMEOUT + Duration::from_secs(1)).await;
    database.resume().await;

    let (status, attempts) = database.settled(event, Duration::from_secs(40)).await;
    assert_eq!((status.as_str(), attempts), ("delivered", 1));
    // At least once: the unrecorded 200 was followed by a second send of the same webhook-id.
    assert!(receiver.times(&message_id) >= 2, "sent only once");
    replica.stop().await;
}

#[tokio::test]
async fn a_5xx_that_could_not_be_recorded_never_ends_delivered() {
    let database = Database::start().await;
    let receiver = Receiver::start(500, Some(stop_database_then_answer(&database.cluster))).await;
    let config = database.config(&receiver.url, 2).await;
    let replica = Replica::start(&database);
    let (event, message_id) = database.enqueue(config).await;

    wait_until_down(&database).await;
    // Down for longer than a pool waits for a connection, so the answer cannot be recorded late.
    tokio::time::sleep(wirehook_core::process::ACQUIRE_TIMEOUT + Duration::from_secs(1)).await;
    database.resume().await;

    let (status, attempts) = database.settled(event, Duration::from_secs(40)).await;
    assert_eq!((status.as_str(), attempts), ("failed", 2));
    // Two recorded attempts, plus the one whose answer was lost with the database.
    assert!(
        receiver.times(&message_id) >= 3,
        "{}",
        receiver.times(&message_id)
    );
    replica.stop().await;
}
