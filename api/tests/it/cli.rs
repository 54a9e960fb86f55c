//! The `api` binary: bad configuration exits non-zero with one clear line.

use std::process::Command;

fn api() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WIREHOOK_ENV", "development");
    cmd
}

#[test]
fn serve_without_database_url_names_the_variable() {
    let out = api()
        .arg("serve")
        .env("JWT_SECRET", "0123456789abcdef0123")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "api: DATABASE_URL is not set");
}

#[test]
fn token_without_jwt_secret_fails_with_one_line() {
    let out = api().args(["token", "--sub", "ops"]).output().expect("run");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "api: JWT_SECRET is not set"
    );
}

#[test]
fn token_with_a_bad_ttl_is_refused() {
    let out = api()
        .args(["token", "--sub", "ops", "--ttl", "soon"])
        .env("JWT_SECRET", "0123456789abcdef0123")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ttl"));
}

#[test]
fn token_prints_a_jwt() {
    let out = api()
        .args(["token", "--sub", "ops", "--ttl", "1h"])
        .env("JWT_SECRET", "0123456789abcdef0123")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );
}

#[test]
fn serve_refuses_an_invalid_address() {
    let out = api()
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("JWT_SECRET", "0123456789abcdef0123")
        .env("API_ADDR", "not-an-address")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("api: API_ADDR is invalid"));
}

#[test]
fn openapi_needs_no_configuration() {
    let out = api().arg("openapi").output().expect("run");
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(spec["info"]["title"], "wirehook");
}
