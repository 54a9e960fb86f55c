//! Signing secrets at rest: encrypted in the database (no secret in a `pg_dump`), still signing
//! deliveries that Standard Webhooks libraries verify; plain-text rows from before are encrypted
//! at the api's first start, and `api reencrypt` moves every row to the newest key.

use std::process::Command;

use chrono::Utc;
use entity::{ConfigStatus, EventTypes, RetryPolicy, webhook_configs};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use wirehook_core::secrets::Keyring;
use wirehook_core::signing::generate_secret;
use wirehook_testkit::receiver::{Keep, Receiver};

use crate::common::{POOL, TestApp, fresh_database};
use crate::secrets::{RunningApi, api_binary};

/// Two keys for rotation tests (32 bytes of 0x01, of 0x02).
const KEY_1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

/// The whole database as `pg_dump` writes it (schema and data, every table).
fn pg_dump(database_url: &str) -> String {
    let pg_dump = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pg_dump"))
        .find(|path| path.exists())
        .unwrap_or_else(|| "pg_dump".into());
    let out = Command::new(pg_dump)
        .arg(database_url)
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a UTF-8 dump")
}

/// The secret and its base64 part: neither may be found.
fn forms(secret: &str) -> [&str; 2] {
    [secret, secret.strip_prefix("whsec_").unwrap_or(secret)]
}

fn secret_of(answer: &Value) -> String {
    answer["webhook"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {answer}"))
        .to_owned()
}

fn headers(arrival: &std::collections::BTreeMap<String, String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in arrival {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

#[tokio::test]
async fn no_secret_appears_in_a_dump_and_deliveries_still_verify() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start(Keep::Requests).await.expect("receiver");
    let url = receiver.url("/hook");

    let given = generate_secret();
    let (status, created) = app
        .post(
            "/api/webhooks/config",
            json!({"name": "given", "url": url, "secret": given,
                   "eventTypes": ["call.completed"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let first = created["webhook"]["id"].as_i64().expect("id");
    let (status, generated) = app
        .post(
            "/api/webhooks/config",
            json!({"name": "generated", "url": url, "eventTypes": ["call.completed"]}),
        )
        .await;
    assert_eq!(status, 201, "{generated}");
    let second = generated["webhook"]["id"].as_i64().expect("id");
    let (status, rotated) = app
        .post(
            &format!("/api/webhooks/config/{first}/rotate-secret"),
            json!({"overlapSeconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let replaced = generate_secret();
    let (status, updated) = app
        .put(
            &format!("/api/webhooks/config/{second}"),
            json!({"secret": replaced}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let rotated_secret = secret_of(&rotated);
    let secrets = [
        given.clone(),
        secret_of(&generated),
        rotated_secret.clone(),
        replaced,
    ];

    let dump = pg_dump(app.database_url());
    assert!(
        dump.contains("webhook_configs"),
        "not a dump of the test database"
    );
    for secret in &secrets {
        for form in forms(secret) {
            assert!(!dump.contains(form), "`{form}` is in the dump");
        }
    }

    // The first configuration signs with its new secret and, during the overlap, its old one.
    let (status, answer) = app
        .post(
            &format!("/api/webhooks/config/{first}/test"),
            json!({"eventType": "call.completed"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["details"]["delivered"], true, "{answer}");
    let arrival = receiver
        .received()
        .into_iter()
        .last()
        .expect("the test delivery arrived");
    let headers = headers(&arrival.headers);
    for secret in [&rotated_secret, &given] {
        Webhook::new(secret)
            .expect("a Standard Webhooks secret")
            .verify(&arrival.body, &headers)
            .expect("the delivery verifies with the secret");
    }
}

/// A configuration row as an older version wrote it: secrets in plain text.
async fn plain_row(db: &DatabaseConnection, secret: &str, previous: Option<&str>) -> i64 {
    let now = Utc::now();
    webhook_configs::ActiveModel {
        name: Set("legacy".into()),
        url: Set("https://example.com/hook".into()),
        secret: Set(secret.to_owned()),
        previous_secret: Set(previous.map(str::to_owned)),
        previous_secret_expires_at: Set(previous.map(|_| now + chrono::Duration::hours(1))),
        event_types: Set(EventTypes(vec!["call.completed".into()])),
        status: Set(ConfigStatus::Active),
        retry_config: Set(RetryPolicy::default()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert a configuration")
    .id
}

async fn stored(db: &DatabaseConnection, id: i64) -> webhook_configs::Model {
    webhook_configs::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("read")
        .expect("row")
}

#[tokio::test]
async fn plain_text_secrets_are_encrypted_at_the_first_start() {
    let database = fresh_database().await;
    let db = database.connect_migrated(POOL).await.expect("migrate");
    let (secret, previous) = (generate_secret(), generate_secret());
    let id = plain_row(&db, &secret, Some(&previous)).await;

    let api = RunningApi::start_with(database.url(), |cmd| {
        cmd.env("WIREHOOK_ENCRYPTION_KEY", KEY_1);
    })
    .await;
    let output = api.stop();
    assert!(
        output.contains("plain-text signing secrets encrypted"),
        "{output}"
    );

    let row = stored(&db, id).await;
    let ring = Keyring::parse(KEY_1).expect("key");
    assert!(ring.is_current(&row.secret), "{}", row.secret);
    let stored_previous = row.previous_secret.expect("previous secret kept");
    assert!(ring.is_current(&stored_previous), "{stored_previous}");
    assert_eq!(ring.decrypt(&row.secret).expect("decrypts"), secret);
    assert_eq!(ring.decrypt(&stored_previous).expect("decrypts"), previous);
}

#[tokio::test]
async fn reencrypt_moves_every_secret_to_the_newest_key_in_batches() {
    let database = fresh_database().await;
    let db = database.connect_migrated(POOL).await.expect("migrate");
    let old = Keyring::parse(KEY_1).expect("key");
    let plain: Vec<(String, String)> = (0..5)
        .map(|_| (generate_secret(), generate_secret()))
        .collect();
    let mut ids = Vec::new();
    for (i, (secret, previous)) in plain.iter().enumerate() {
        // One row still in plain text; the others under the old key.
        let (s, p) = if i == 0 {
            (secret.clone(), previous.clone())
        } else {
            (old.encrypt(secret), old.encrypt(previous))
        };
        ids.push(plain_row(&db, &s, Some(&p)).await);
    }

    let reencrypt = || {
        api_binary()
            .args(["reencrypt", "--batch", "2"])
            .env("DATABASE_URL", database.url())
            .env("WIREHOOK_ENCRYPTION_KEY", format!("{KEY_2},{KEY_1}"))
            .output()
            .expect("run api reencrypt")
    };
    let out = reencrypt();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");

    let new_only = Keyring::parse(KEY_2).expect("key");
    for (id, (secret, previous)) in ids.iter().zip(&plain) {
        let row = stored(&db, *id).await;
        assert!(new_only.is_current(&row.secret), "{}", row.secret);
        assert_eq!(new_only.decrypt(&row.secret).expect("decrypts"), *secret);
        let stored_previous = row.previous_secret.expect("previous");
        assert_eq!(
            new_only.decrypt(&stored_previous).expect("decrypts"),
            *previous
        );
    }
    let again = reencrypt();
    assert_eq!(String::from_utf8_lossy(&again.stdout), "0\n", "{again:?}");
}
