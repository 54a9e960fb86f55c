//! Test harness: a fresh database per test, the real app on port 0, an authorized client,
//! worker replicas in-process (all from [`wirehook_testkit`]).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{Direction, EventStatus, Source, webhook_events};
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};
use secrecy::SecretString;
use serde_json::{Value, json};
use wirehook_api::App;
use wirehook_api::config::{InboundConfig, JwtConfig, Limits};
use wirehook_testkit::cluster::{self, Cluster};
use wirehook_testkit::db::TestDb;
use wirehook_testkit::replica::{self, Replica};

pub const JWT_SECRET: &str = "integration-test-jwt-secret";
/// `SIGNALWIRE_SIGNING_KEY` of the test app.
pub const SIGNALWIRE_KEY: &str = "PSKtest1234567890abcdef";
/// `ELEVENLABS_WEBHOOK_SECRET` of the test app.
pub const ELEVENLABS_SECRET: &str = "wsec_test_elevenlabs_secret";

/// Prefix of the tests' databases: `wirehook_test_<ulid>`.
const DB_PREFIX: &str = "wirehook_test";

/// Connections of the app's pool (and of a replica's): sqlx's default, which the tests have
/// always run with.
pub const POOL: u32 = 10;

/// What an in-process replica runs with unless a test says otherwise: quick polls, leases and
/// gauges, a 1 s delivery timeout, a 1 s shutdown grace.
const REPLICA: &[(&str, &str)] = &[
    ("WORKER_POLL_INTERVAL_MS", "100"),
    ("DELIVERY_TIMEOUT_SECS", "1"),
    ("WORKER_SHUTDOWN_GRACE_SECS", "1"),
    ("WORKER_HEARTBEAT_SECS", "2"),
    ("QUEUE_SAMPLE_SECS", "1"),
];

/// An empty database on the server named by `DATABASE_URL`, dropped with the value.
pub async fn fresh_database() -> TestDb {
    TestDb::from_env(DB_PREFIX).await.expect("test database")
}

/// The running api with its database and an authorized HTTP client.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: DatabaseConnection,
    pub client: reqwest::Client,
    pub token: String,
    /// `PUBLIC_BASE_URL` of the app (its own address unless a test changes it).
    pub public_base_url: String,
    database: TestDb,
}

pub fn jwt_config() -> JwtConfig {
    JwtConfig {
        secret: SecretString::from(JWT_SECRET),
        issuer: None,
        audience: None,
    }
}

impl TestApp {
    /// Starts the app against a freshly migrated database.
    pub async fn spawn() -> Self {
        Self::spawn_with(jwt_config()).await
    }

    /// Starts the app with the given JWT settings.
    pub async fn spawn_with(jwt: JwtConfig) -> Self {
        Self::spawn_configured(jwt, |_| {}, true, Limits::default()).await
    }

    /// Starts the app as `api serve` runs it, with the binary's pool
    /// ([`wirehook_core::process::connect`]), on a fresh database of the server at
    /// `admin_url`: a throwaway cluster that the test stops and starts.
    pub async fn spawn_on(admin_url: &str) -> Self {
        let database = TestDb::create(admin_url, DB_PREFIX)
            .await
            .expect("test database")
            .keep_on_drop();
        let db = wirehook_core::process::connect(database.url(), 32)
            .await
            .expect("connect like the binary");
        migration::migrate(&db)
            .await
            .expect("migrate test database");
        Self::spawn_inner(
            database,
            db,
            jwt_config(),
            |_| {},
            true,
            Limits::default(),
            None,
        )
        .await
    }

    /// Starts the app as `api serve` runs it with `DATABASE_READ_URL` and
    /// `DATABASE_READ_MAX_LAG_SECS = max_lag`: on a fresh database of the throwaway cluster
    /// `primary`, reading history lists from the same database on `standby`, a hot standby of
    /// it. Returns once the standby has replayed the migrated database.
    pub async fn spawn_with_standby(
        primary: &Cluster,
        standby: &Cluster,
        max_lag: Duration,
    ) -> Self {
        let database = TestDb::create(&primary.url(), DB_PREFIX)
            .await
            .expect("test database")
            .keep_on_drop();
        let db = wirehook_core::process::connect(database.url(), 32)
            .await
            .expect("connect like the binary");
        migration::migrate(&db)
            .await
            .expect("migrate test database");
        cluster::wait_for_replay(primary, standby)
            .await
            .expect("the standby replays the migrations");
        let read = wirehook_core::process::connect_lazy(
            &standby.url_of(database.name()),
            32,
            wirehook_api::read_replica::APPLICATION_NAME,
        )
        .await
        .expect("read pool");
        let limits = Limits::default();
        Self::spawn_inner(
            database,
            db,
            jwt_config(),
            |_| {},
            true,
            limits,
            Some((read, max_lag)),
        )
        .await
    }

    /// Starts the app on `database`, which the test filled and migrated itself (`db`).
    pub async fn spawn_on_database(database: TestDb, db: DatabaseConnection) -> Self {
        wirehook_testkit::init_logs();
        Self::spawn_inner(
            database,
            db,
            jwt_config(),
            |_| {},
            true,
            Limits::default(),
            None,
        )
        .await
    }

    /// Starts the app with both provider keys set and `inbound` applied to the inbound settings.
    pub async fn spawn_inbound(inbound: impl FnOnce(&mut InboundConfig)) -> Self {
        Self::spawn_configured(jwt_config(), inbound, true, Limits::default()).await
    }

    /// Starts the app as production delivers: the delivery client's SSRF guard is on
    /// (`ALLOW_PRIVATE_TARGETS=false`), so test deliveries to private addresses are refused.
    pub async fn spawn_guarded() -> Self {
        Self::spawn_configured(jwt_config(), |_| {}, false, Limits::default()).await
    }

    /// Starts the app with both provider keys set and `limits` instead of the defaults.
    pub async fn spawn_limited(limits: Limits) -> Self {
        Self::spawn_configured(jwt_config(), |_| {}, true, limits).await
    }

    async fn spawn_configured(
        jwt: JwtConfig,
        inbound: impl FnOnce(&mut InboundConfig),
        allow_private_targets: bool,
        limits: Limits,
    ) -> Self {
        wirehook_testkit::init_logs();
        let database = fresh_database().await;
        let db = database
            .connect_migrated(POOL)
            .await
            .expect("migrate test database");
        Self::spawn_inner(
            database,
            db,
            jwt,
            inbound,
            allow_private_targets,
            limits,
            None,
        )
        .await
    }

    async fn spawn_inner(
        database: TestDb,
        db: DatabaseConnection,
        jwt: JwtConfig,
        inbound: impl FnOnce(&mut InboundConfig),
        allow_private_targets: bool,
        limits: Limits,
        read_replica: Option<(DatabaseConnection, Duration)>,
    ) -> Self {
        let (acceptor, addr) = wirehook_api::app::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let delivery = wirehook_core::http_client::ClientConfig {
            timeout: Duration::from_secs(2),
            allow_private_targets,
            user_agent: "wirehook-tests".into(),
        };
        let public_base_url = format!("http://{addr}");
        let mut inbound_config =
            InboundConfig::unconfigured(url::Url::parse(&public_base_url).expect("base URL"));
        inbound_config.signalwire_signing_key = Some(SecretString::from(SIGNALWIRE_KEY));
        inbound_config.elevenlabs_webhook_secret = Some(SecretString::from(ELEVENLABS_SECRET));
        inbound(&mut inbound_config);
        let public_base_url = inbound_config
            .public_base_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let app = App::new(
            db.clone(),
            &jwt,
            delivery,
            std::sync::Arc::new(wirehook_core::secrets::Keyring::development()),
            inbound_config,
        )
        .expect("app")
        .with_limits(limits);
        let app = match read_replica {
            Some((standby, max_lag)) => app.with_read_replica(standby, max_lag),
            None => app,
        };
        tokio::spawn(app.serve(acceptor, std::future::pending()));
        let token = wirehook_api::auth::issue_token(&jwt, "tests", Duration::from_secs(600))
            .expect("token");
        Self {
            addr,
            db,
            client: reqwest::Client::new(),
            token,
            public_base_url,

            database,
        }
    }

    /// Starts a real worker replica (apalis runtime) in-process; it stops when dropped.
    pub async fn start_worker(&self) -> Replica {
        self.start_worker_with(&[]).await
    }

    /// [`start_worker`](Self::start_worker) with extra worker environment variables (which win).
    pub async fn start_worker_with(&self, vars: &[(&str, &str)]) -> Replica {
        let settings = replica::settings(self.database.url(), &[REPLICA, vars].concat())
            .expect("worker settings");
        let db = self.database.connect(POOL).await.expect("connect");
        Replica::start(db, settings).expect("replica")
    }

    /// Starts a second api on the same database (its own pool, listener and group commit), as
    /// another replica behind a load balancer would be; returns its base URL. It runs until
    /// the test ends.
    pub async fn start_api_replica(&self) -> String {
        let (acceptor, addr) = wirehook_api::app::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let db = self.database.connect(POOL).await.expect("connect");
        let delivery = wirehook_core::http_client::ClientConfig {
            timeout: Duration::from_secs(2),
            allow_private_targets: true,
            user_agent: "wirehook-tests".into(),
        };
        let base = format!("http://{addr}");
        let inbound = InboundConfig::unconfigured(url::Url::parse(&base).expect("base URL"));
        let app = App::new(
            db,
            &jwt_config(),
            delivery,
            std::sync::Arc::new(wirehook_core::secrets::Keyring::development()),
            inbound,
        )
        .expect("app");
        tokio::spawn(app.serve(acceptor, std::future::pending()));
        base
    }

    /// The test database's URL (for the binaries).
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends an authorized request and returns status and JSON body (Null when not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        read(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Creates a configuration from the contract's example, with `overrides` merged in; returns it.
    pub async fn create_config(&self, overrides: Value) -> Value {
        let mut body = example_config();
        merge(&mut body, overrides);
        let (status, json) = self.post("/api/webhooks/config", body).await;
        assert_eq!(status, 201, "create config: {json}");
        json["webhook"].clone()
    }

    /// Inserts an event row directly (until producers exist) and returns its id. An event
    /// created on another day gets that day's id, in that day's partition (made if missing).
    pub async fn insert_event(&self, e: NewEvent) -> i64 {
        let now = e.created_at.unwrap_or_else(Utc::now);
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &self.db,
            sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT webhook_history_ensure_days(d, d), webhook_event_id($1) AS id \
                 FROM (SELECT ($1 AT TIME ZONE 'UTC')::date AS d) AS day",
                [now.into()],
            ),
        )
        .await
        .expect("event id")
        .expect("event id row");
        let id: i64 = row.try_get("", "id").expect("event id");
        webhook_events::ActiveModel {
            id: Set(id),
            message_id: Set(entity::MessageId::generate().into_inner()),
            direction: Set(e.direction),
            source: Set(e.source),
            event_type: Set(e.event_type.to_owned()),
            payload: Set(e.payload),
            status: Set(e.status),
            attempts: Set(e.attempts),
            attempt_base: Set(0),
            webhook_config_id: Set(e.config_id),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .expect("insert event")
        .id
    }
}

/// An event row for [`TestApp::insert_event`].
pub struct NewEvent {
    pub direction: Direction,
    pub source: Source,
    pub event_type: &'static str,
    pub status: EventStatus,
    pub attempts: i32,
    pub config_id: Option<i64>,
    pub payload: Value,
    pub created_at: Option<DateTime<Utc>>,
}

impl NewEvent {
    pub fn inbound(event_type: &'static str) -> Self {
        Self {
            direction: Direction::Inbound,
            source: Source::SignalWire,
            event_type,
            status: EventStatus::Processed,
            attempts: 0,
            config_id: None,
            payload: json!({"call_id": "CA123", "state": "completed"}),
            created_at: None,
        }
    }

    pub fn outbound(event_type: &'static str, config_id: i64, status: EventStatus) -> Self {
        Self {
            direction: Direction::Outbound,
            source: Source::Platform,
            event_type,
            status,
            attempts: 1,
            config_id: Some(config_id),
            payload: json!({"callId": "CA123", "status": "completed"}),
            created_at: None,
        }
    }
}

pub async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The contract's "Create Webhook Configuration" example body.
pub fn example_config() -> Value {
    json!({
        "name": "Marketing Platform",
        "url": "https://marketing.example.com/webhooks/11wire",
        "secret": "webhooksecret123",
        "eventTypes": ["call.completed", "conversation.completed"],
        "status": "active",
        "headers": {"X-API-Key": "marketing-api-key-456"},
        "retryConfig": {"maxAttempts": 3, "initialDelay": 60, "maxDelay": 1800, "backoffFactor": 2},
        "filters": {"campaigns": ["campaign-789"], "outcomes": ["lead_qualified"]},
        "metadata": {"owner": "marketing-team", "priority": "medium"}
    })
}

/// Shallow-merges `extra` into `base` (objects only); a null value removes the key.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
}

/// Asserts the uniform error shape and returns the error code.
pub fn error_code(body: &Value) -> String {
    assert_eq!(body["success"], json!(false), "not an error body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// True when `s` is an ISO 8601 / RFC 3339 timestamp.
pub fn is_iso8601(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok())
}
