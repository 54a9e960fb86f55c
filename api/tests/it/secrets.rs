//! Secrets (configuration signing secrets, `JWT_SECRET`, provider keys, the database password)
//! never appear in logs, error messages or API responses.
//!
//! The real `api` binary runs with `RUST_LOG=debug`; its whole output is captured while the
//! flows that handle secrets are exercised, then searched for every secret.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use secrecy::SecretString;
use serde_json::{Value, json};
use wirehook_api::config::JwtConfig;
use wirehook_api::inbound::{elevenlabs, signalwire};
use wirehook_testkit::receiver::Receiver;

use crate::common::{POOL, example_config, fresh_database};

pub(crate) const JWT: &str = "jwt-secret-5f1c9a7e-do-not-log";
const SIGNALWIRE: &str = "PSK-signalwire-key-0b7d3e-do-not-log";
pub(crate) const ELEVENLABS: &str = "wsec-elevenlabs-secret-8c2a61-do-not-log";
const DB_PASSWORD: &str = "db-password-3e9b70-do-not-log";
/// A credential a customer put in a custom header; stored, but never logged.
const HEADER_CREDENTIAL: &str = "customer-api-key-4a1f08-do-not-log";

pub(crate) fn api_binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WIREHOOK_ENV", "development");
    cmd
}

/// Collects everything a pipe yields until it closes.
fn drain(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .expect("log buffer")
                .extend_from_slice(&buf[..n]);
        }
    })
}

/// The `api serve` process, its address and everything it printed.
pub(crate) struct RunningApi {
    child: Child,
    pub(crate) addr: SocketAddr,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl RunningApi {
    async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, |_| {}).await
    }

    /// Starts `api serve` in development mode on `database_url`, with `adjust` applied to its
    /// command last (it may remove `WIREHOOK_ENV` or set more variables).
    pub(crate) async fn start_with(database_url: &str, adjust: impl FnOnce(&mut Command)) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let mut command = api_binary();
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("API_ADDR", addr.to_string())
            .env("JWT_SECRET", JWT)
            .env("SIGNALWIRE_SIGNING_KEY", SIGNALWIRE)
            .env("ELEVENLABS_WEBHOOK_SECRET", ELEVENLABS)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("start the api binary");
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take().expect("stdout"), output.clone()),
            drain(child.stderr.take().expect("stderr"), output.clone()),
        ];
        let api = Self {
            child,
            addr,
            output,
            readers,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return api;
            }
            assert!(
                Instant::now() < deadline,
                "the api did not start: {}",
                api.output_so_far()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn output_so_far(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("log buffer")).into_owned()
    }

    /// Stops the process (SIGTERM, then SIGKILL) and returns all it printed.
    pub(crate) fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output_so_far()
    }
}

/// What one request answered, kept for the final search.
struct Seen {
    what: String,
    status: u16,
    body: String,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    seen: Vec<Seen>,
}

impl Client {
    async fn send(&mut self, what: &str, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        self.seen.push(Seen {
            what: what.to_owned(),
            status,
            body,
        });
        (status, json)
    }

    async fn api(
        &mut self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(what, req).await
    }
}

fn random_secret() -> String {
    let key: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[tokio::test]
async fn secrets_never_appear_in_logs_errors_or_responses() {
    let db = fresh_database().await;
    db.connect_migrated(POOL).await.expect("migrate");
    let mut database_url = url::Url::parse(db.url()).expect("database URL");
    let db_password = match database_url.password() {
        Some(password) => password.to_owned(),
        // Trust authentication ignores it, but the api must still never print it.
        None => {
            database_url
                .set_password(Some(DB_PASSWORD))
                .expect("set password");
            DB_PASSWORD.to_owned()
        }
    };
    let api = RunningApi::start(database_url.as_str()).await;
    let receiver = Receiver::ok().await.expect("receiver");
    let jwt = JwtConfig {
        secret: SecretString::from(JWT),
        issuer: None,
        audience: None,
    };
    let mut client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", api.addr),
        token: wirehook_api::auth::issue_token(&jwt, "secrets-test", Duration::from_secs(600))
            .expect("token"),
        seen: Vec::new(),
    };
    let (first_secret, second_secret) = (random_secret(), random_secret());
    // Valid base64 characters, then one that is not: refused, and must not be echoed.
    let rejected_key = random_secret()["whsec_".len()..].to_owned();
    let rejected_secret = format!("whsec_{rejected_key}!");
    use reqwest::Method;

    // Configuration flows: create (the one answer allowed to show its own secret), a refused
    // secret, a secret change, reads, a signed test delivery.
    let mut config = example_config();
    crate::common::merge(
        &mut config,
        json!({
            "url": receiver.url("/hooks"),
            "secret": first_secret,
            "filters": null,
            "headers": {"Authorization": format!("Bearer {HEADER_CREDENTIAL}")},
        }),
    );
    let (status, created) = client
        .api("create", Method::POST, "/api/webhooks/config", Some(config))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["webhook"]["id"].as_i64().expect("id");
    let mut refused = example_config();
    crate::common::merge(&mut refused, json!({"secret": rejected_secret}));
    let (status, _) = client
        .api(
            "create with a bad secret",
            Method::POST,
            "/api/webhooks/config",
            Some(refused),
        )
        .await;
    assert_eq!(status, 400);
    let path = format!("/api/webhooks/config/{id}");
    let (status, _) = client
        .api(
            "update the secret",
            Method::PUT,
            &path,
            Some(json!({"secret": second_secret})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, tested) = client
        .api(
            "test delivery",
            Method::POST,
            &format!("{path}/test"),
            Some(json!({"eventType": "call.completed"})),
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["details"]["delivered"], true, "{tested}");
    let event_path = format!("/api/webhooks/events/{}", tested["details"]["eventId"]);
    for (what, path) in [
        ("get config", path.as_str()),
        ("list configs", "/api/webhooks/config"),
        ("list events", "/api/webhooks/events"),
        ("event details", event_path.as_str()),
    ] {
        let (status, _) = client.api(what, Method::GET, path, None).await;
        assert_eq!(status, 200, "{what}");
    }

    // Failing authentication, including a client that sends the JWT secret itself as a token.
    let base = client.base.clone();
    for (what, token) in [
        ("the JWT secret as a token", JWT.to_owned()),
        ("a malformed token", "a.b.c".to_owned()),
    ] {
        let req = client
            .http
            .get(format!("{base}/api/webhooks/config"))
            .bearer_auth(token);
        let (status, _) = client.send(what, req).await;
        assert_eq!(status, 401, "{what}");
    }

    // Provider webhooks: accepted and refused, for both providers.
    let body =
        json!({"event_type": "call.completed", "call_id": "CA-secrets", "state": "completed"})
            .to_string();
    let url = format!("{base}/api/webhooks/signalwire");
    for (what, signature) in [
        (
            "signed SignalWire",
            signalwire::sign_json(SIGNALWIRE.as_bytes(), &url, body.as_bytes()),
        ),
        (
            "SignalWire signed with another key",
            signalwire::sign_json(b"another-key", &url, body.as_bytes()),
        ),
    ] {
        let req = client
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("X-SignalWire-Signature", signature)
            .body(body.clone());
        client.send(what, req).await;
    }
    let now = chrono::Utc::now().timestamp();
    for (what, header) in [
        (
            "signed ElevenLabs",
            elevenlabs::sign(ELEVENLABS.as_bytes(), now, body.as_bytes()),
        ),
        (
            "stale ElevenLabs",
            elevenlabs::sign(ELEVENLABS.as_bytes(), now - 7200, body.as_bytes()),
        ),
    ] {
        let req = client
            .http
            .post(format!("{base}/api/webhooks/elevenlabs"))
            .header("content-type", "application/json")
            .header("ElevenLabs-Signature", header)
            .body(body.clone());
        client.send(what, req).await;
    }
    let statuses: Vec<(&str, u16)> = client
        .seen
        .iter()
        .map(|s| (s.what.as_str(), s.status))
        .collect();
    assert!(
        statuses.contains(&("signed SignalWire", 200))
            && statuses.contains(&("SignalWire signed with another key", 401))
            && statuses.contains(&("signed ElevenLabs", 200))
            && statuses.contains(&("stale ElevenLabs", 401)),
        "{statuses:?}"
    );

    let logs = api.stop();
    assert!(logs.contains("api listening"), "no logs captured: {logs}");
    assert!(logs.contains("DEBUG"), "debug logs were not on: {logs}");
    let secrets = [
        ("JWT_SECRET", JWT.to_owned()),
        ("SIGNALWIRE_SIGNING_KEY", SIGNALWIRE.to_owned()),
        ("ELEVENLABS_WEBHOOK_SECRET", ELEVENLABS.to_owned()),
        ("the database password", db_password),
        ("the first config secret", first_secret.clone()),
        ("its key", first_secret["whsec_".len()..].to_owned()),
        ("the second config secret", second_secret.clone()),
        ("its key", second_secret["whsec_".len()..].to_owned()),
        ("a refused config secret", rejected_key),
    ];
    for (name, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{name} is in the logs:\n{logs}"
        );
    }
    assert!(
        !logs.contains(HEADER_CREDENTIAL),
        "a custom header credential is in the logs:\n{logs}"
    );
    for seen in &client.seen {
        for (name, secret) in &secrets {
            let own_secret = secret == &first_secret || secret == &first_secret["whsec_".len()..];
            if seen.what == "create" && own_secret {
                continue;
            }
            assert!(
                !seen.body.contains(secret.as_str()),
                "{name} is in the answer to `{}`: {}",
                seen.what,
                seen.body
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_database_error_does_not_print_its_password() {
    let out = api_binary()
        .arg("serve")
        .env(
            "DATABASE_URL",
            format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:1/wirehook"),
        )
        .env("JWT_SECRET", JWT)
        .env("API_ADDR", "127.0.0.1:0")
        .output()
        .expect("run the api binary");
    assert!(!out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("database"), "{printed}");
    assert!(!printed.contains(DB_PASSWORD), "{printed}");
}

#[tokio::test]
async fn configuration_errors_do_not_echo_secret_values() {
    for (name, vars) in [
        (
            "JWT_SECRET",
            [
                ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x"),
                ("JWT_SECRET", "tiny-do-not-log"),
            ],
        ),
        (
            "DATABASE_URL",
            [
                ("DATABASE_URL", "mysql://root:mysql-pw-do-not-log@db/x"),
                ("JWT_SECRET", JWT),
            ],
        ),
    ] {
        let out = api_binary()
            .arg("serve")
            .envs(vars)
            .output()
            .expect("run the api binary");
        assert!(!out.status.success());
        let printed = String::from_utf8_lossy(&out.stderr);
        assert!(printed.contains(name), "{printed}");
        assert!(!printed.contains("do-not-log"), "{printed}");
    }
}
