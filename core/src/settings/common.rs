//! What both binaries read alike: the database, where they run, and how deliveries go out.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::env::{Env, SettingsError, invalid};
use crate::http_client::ClientConfig;
use crate::secrets::{self, KeySource, Keyring};

/// Where the service runs; production turns on the SSRF guard and the providers' IP allow lists,
/// and requires `WIREHOOK_ENCRYPTION_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// `WIREHOOK_ENV=development`: only when asked for, since it loosens every guard.
    Development,
    /// `WIREHOOK_ENV=production`, or unset: a forgotten variable must not open the door.
    Production,
}

/// The settings the api and the worker share.
#[derive(Debug, Clone)]
pub struct Common {
    /// `DATABASE_URL`: a `postgres://` or `postgresql://` URL.
    pub database_url: SecretString,
    /// `WIREHOOK_ENV`: `production` (default) or `development`.
    pub environment: Environment,
    /// `ALLOW_PRIVATE_TARGETS`: default true in development, false in production.
    pub allow_private_targets: bool,
    /// `WIREHOOK_ENCRYPTION_KEY`: the keys signing secrets are encrypted with at rest; required
    /// in production, the fixed development key in development when unset.
    pub keyring: Arc<Keyring>,
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
        let keyring = match (env.get(secrets::ENV_VAR), environment) {
            (Some(raw), _) => {
                Keyring::parse(&raw).map_err(|e| invalid(secrets::ENV_VAR, e.to_string()))?
            }
            (None, Environment::Development) => Keyring::development(),
            (None, Environment::Production) => {
                return Err(invalid(
                    secrets::ENV_VAR,
                    "required in production (base64 of 32 random bytes, e.g. \
                     `openssl rand -base64 32`); set WIREHOOK_ENV=development for local runs",
                ));
            }
        };
        Ok(Self {
            database_url,
            environment,
            allow_private_targets,
            delivery_timeout: Duration::from_secs(timeout_secs),
            keyring: Arc::new(keyring),
        })
    }

    /// Logs the mode and every setting that loosens the defaults, at warn level when it does:
    /// one line per binary start that an operator can grep for.
    pub fn log_mode(&self, binary: &str) {
        let key_ids = self.keyring.ids().join(",");
        match self.environment {
            Environment::Production => tracing::info!(
                binary,
                mode = "production",
                allow_private_targets = self.allow_private_targets,
                encryption_key_ids = %key_ids,
                "production mode: SSRF guard and provider IP allow lists on"
            ),
            Environment::Development => tracing::warn!(
                binary,
                mode = "development",
                allow_private_targets = self.allow_private_targets,
                encryption_key_ids = %key_ids,
                "development mode (WIREHOOK_ENV=development): provider IP allow lists off; \
                 never run it in production"
            ),
        }
        if self.allow_private_targets {
            tracing::warn!(
                binary,
                "ALLOW_PRIVATE_TARGETS=true: deliveries may reach private, loopback and \
                 link-local addresses (SSRF guard off)"
            );
        }
        if self.keyring.source() == KeySource::Development {
            tracing::warn!(
                binary,
                "WIREHOOK_ENCRYPTION_KEY unset: signing secrets are encrypted with the fixed, \
                 public development key"
            );
        }
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
    postgres_url("DATABASE_URL", url)
}

/// `name`'s value when set, which must then be a PostgreSQL URL (e.g. `DATABASE_READ_URL`).
pub fn optional_database_url<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    name: &'static str,
) -> Result<Option<SecretString>, SettingsError> {
    env.get(name).map(|url| postgres_url(name, url)).transpose()
}

fn postgres_url(name: &'static str, url: String) -> Result<SecretString, SettingsError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(name, "expected a postgres:// URL"));
    }
    Ok(SecretString::from(url))
}

/// `WIREHOOK_ENV`.
fn environment<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Environment, SettingsError> {
    match env.get("WIREHOOK_ENV").as_deref() {
        Some("development") => Ok(Environment::Development),
        None | Some("production") => Ok(Environment::Production),
        Some(other) => Err(invalid(
            "WIREHOOK_ENV",
            format!("`{other}` is not `development` or `production`"),
        )),
    }
}
