//! What both binaries read alike: the database, where they run, and how deliveries go out.

use std::time::Duration;

use secrecy::SecretString;

use super::env::{Env, SettingsError, invalid};
use crate::http_client::ClientConfig;

/// Where the service runs; production turns on the SSRF guard and the providers' IP allow lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// `WIREHOOK_ENV=development` (the default).
    Development,
    /// `WIREHOOK_ENV=production`.
    Production,
}

/// The settings the api and the worker share.
#[derive(Debug, Clone)]
pub struct Common {
    /// `DATABASE_URL`: a `postgres://` or `postgresql://` URL.
    pub database_url: SecretString,
    /// `WIREHOOK_ENV`: `development` (default) or `production`.
    pub environment: Environment,
    /// `ALLOW_PRIVATE_TARGETS`: default true outside production, false in production.
    pub allow_private_targets: bool,
    /// `DELIVERY_TIMEOUT_SECS`: total time for one attempt (1–300 s, default 15).
    pub delivery_timeout: Duration,
}

impl Common {
    /// Reads the shared settings.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, SettingsError> {
        let database_url = database_url(env)?;
        let environment = environment(env)?;
        let allow_private_targets = env.flag(
            "ALLOW_PRIVATE_TARGETS",
            environment == Environment::Development,
        )?;
        let timeout_secs = env.ranged("DELIVERY_TIMEOUT_SECS", 15, 1, 300)?;
        Ok(Self {
            database_url,
            environment,
            allow_private_targets,
            delivery_timeout: Duration::from_secs(timeout_secs),
        })
    }

    /// The delivery client's settings: this timeout and SSRF switch, `wirehook/<version>`.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            timeout: self.delivery_timeout,
            allow_private_targets: self.allow_private_targets,
            ..ClientConfig::default()
        }
    }
}

/// `DATABASE_URL`, which must be a PostgreSQL URL.
pub fn database_url<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<SecretString, SettingsError> {
    let url = env.required("DATABASE_URL")?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid("DATABASE_URL", "expected a postgres:// URL"));
    }
    Ok(SecretString::from(url))
}

/// `WIREHOOK_ENV`.
fn environment<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Environment, SettingsError> {
    match env.get("WIREHOOK_ENV").as_deref() {
        None | Some("development") => Ok(Environment::Development),
        Some("production") => Ok(Environment::Production),
        Some(other) => Err(invalid(
            "WIREHOOK_ENV",
            format!("`{other}` is not `development` or `production`"),
        )),
    }
}
