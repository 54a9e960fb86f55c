//! Typed configuration read once from the environment and validated at start.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::inbound::{CidrList, ELEVENLABS_EGRESS_IPS};

/// A setting that is missing or malformed; printed as one line before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where the service runs; production turns on IP allow lists and the SSRF guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Reads variables by name; `std::env::var` in the binaries, a map in tests.
pub trait Lookup {
    /// The variable's value, `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Lookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// JWT settings for the REST API.
#[derive(Clone)]
pub struct JwtConfig {
    pub secret: SecretString,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl JwtConfig {
    /// Reads `JWT_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE`.
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let secret = env
            .get("JWT_SECRET")
            .ok_or(ConfigError::Missing("JWT_SECRET"))?;
        if secret.len() < 16 {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                reason: "use at least 16 characters".into(),
            });
        }
        Ok(Self {
            secret: SecretString::from(secret),
            issuer: env.get("JWT_ISSUER"),
            audience: env.get("JWT_AUDIENCE"),
        })
    }
}

/// Reads `DATABASE_URL`.
pub fn database_url(env: &impl Lookup) -> Result<SecretString, ConfigError> {
    let url = env
        .get("DATABASE_URL")
        .ok_or(ConfigError::Missing("DATABASE_URL"))?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::Invalid {
            name: "DATABASE_URL",
            reason: "expected a postgres:// URL".into(),
        });
    }
    Ok(SecretString::from(url))
}

/// How the inbound provider endpoints verify requests.
#[derive(Clone)]
pub struct InboundConfig {
    /// The URL providers call (`PUBLIC_BASE_URL`); SignalWire signs it.
    pub public_base_url: Url,
    /// `SIGNALWIRE_SIGNING_KEY`; unset answers 503.
    pub signalwire_signing_key: Option<SecretString>,
    /// `ELEVENLABS_WEBHOOK_SECRET`; unset answers 503.
    pub elevenlabs_webhook_secret: Option<SecretString>,
    /// Whether source IPs must be on the provider's allow list (production).
    pub enforce_allow_lists: bool,
    /// `SIGNALWIRE_ALLOWED_IPS`.
    pub signalwire_allowed_ips: CidrList,
    /// `ELEVENLABS_ALLOWED_IPS`, ElevenLabs' published egress IPs by default.
    pub elevenlabs_allowed_ips: CidrList,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: CidrList,
}

impl InboundConfig {
    /// Reads the inbound settings; `environment` decides whether allow lists are enforced.
    pub fn from_env(
        env: &impl Lookup,
        public_base_url: Url,
        environment: Environment,
    ) -> Result<Self, ConfigError> {
        let cidrs = |name: &'static str, default: &str| -> Result<CidrList, ConfigError> {
            let raw = env.get(name).unwrap_or_else(|| default.to_owned());
            raw.parse().map_err(|e| ConfigError::Invalid {
                name,
                reason: format!("{e}"),
            })
        };
        Ok(Self {
            public_base_url,
            signalwire_signing_key: env.get("SIGNALWIRE_SIGNING_KEY").map(SecretString::from),
            elevenlabs_webhook_secret: env.get("ELEVENLABS_WEBHOOK_SECRET").map(SecretString::from),
            enforce_allow_lists: environment == Environment::Production,
            signalwire_allowed_ips: cidrs("SIGNALWIRE_ALLOWED_IPS", "")?,
            elevenlabs_allowed_ips: cidrs("ELEVENLABS_ALLOWED_IPS", ELEVENLABS_EGRESS_IPS)?,
            trusted_proxies: cidrs("TRUSTED_PROXIES", "")?,
        })
    }

    /// No provider keys, no allow lists: what `api openapi` renders the spec with.
    pub fn unconfigured(public_base_url: Url) -> Self {
        Self {
            public_base_url,
            signalwire_signing_key: None,
            elevenlabs_webhook_secret: None,
            enforce_allow_lists: false,
            signalwire_allowed_ips: CidrList::default(),
            elevenlabs_allowed_ips: CidrList::default(),
            trusted_proxies: CidrList::default(),
        }
    }
}

/// Everything `api serve` needs.
#[derive(Clone)]
pub struct ApiConfig {
    pub database_url: SecretString,
    pub api_addr: SocketAddr,
    pub jwt: JwtConfig,
    pub inbound: InboundConfig,
    pub environment: Environment,
    pub allow_private_targets: bool,
    pub delivery_timeout: Duration,
}

impl ApiConfig {
    /// Reads and validates every variable `api serve` uses.
    pub fn from_env(env: &impl Lookup) -> Result<Self, ConfigError> {
        let api_addr: SocketAddr = parse(env, "API_ADDR", "127.0.0.1:8080")?;
        let public_base_url = env
            .get("PUBLIC_BASE_URL")
            .unwrap_or_else(|| format!("http://{api_addr}"));
        let public_base_url = Url::parse(&public_base_url).map_err(|e| ConfigError::Invalid {
            name: "PUBLIC_BASE_URL",
            reason: e.to_string(),
        })?;
        let environment = match env.get("WIREHOOK_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "WIREHOOK_ENV",
                    reason: format!("`{other}` is not `development` or `production`"),
                });
            }
        };
        let default_allow = (environment == Environment::Development).to_string();
        let allow_private_targets = parse_bool(env, "ALLOW_PRIVATE_TARGETS", &default_allow)?;
        let timeout_secs: u64 = parse(env, "DELIVERY_TIMEOUT_SECS", "15")?;
        if !(1..=300).contains(&timeout_secs) {
            return Err(ConfigError::Invalid {
                name: "DELIVERY_TIMEOUT_SECS",
                reason: "must be between 1 and 300".into(),
            });
        }
        Ok(Self {
            database_url: database_url(env)?,
            api_addr,
            jwt: JwtConfig::from_env(env)?,
            inbound: InboundConfig::from_env(env, public_base_url, environment)?,
            environment,
            allow_private_targets,
            delivery_timeout: Duration::from_secs(timeout_secs),
        })
    }
}

fn parse<T>(env: &impl Lookup, name: &'static str, default: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw = env.get(name).unwrap_or_else(|| default.to_owned());
    raw.trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: format!("`{raw}`: {e}"),
        })
}

fn parse_bool(env: &impl Lookup, name: &'static str, default: &str) -> Result<bool, ConfigError> {
    match env.get(name).unwrap_or_else(|| default.to_owned()).as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(ConfigError::Invalid {
            name,
            reason: format!("`{other}` is not true or false"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Lookup {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 2] = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
        ("JWT_SECRET", "0123456789abcdef0123"),
    ];

    #[test]
    fn defaults_follow_the_design() {
        let cfg = ApiConfig::from_env(&env(&BASE)).unwrap();
        assert_eq!(cfg.api_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            cfg.inbound.public_base_url.as_str(),
            "http://127.0.0.1:8080/"
        );
        assert!(!cfg.inbound.enforce_allow_lists);
        assert!(cfg.inbound.trusted_proxies.is_empty());
        assert!(!cfg.inbound.elevenlabs_allowed_ips.is_empty());
        assert_eq!(cfg.environment, Environment::Development);
        assert!(cfg.allow_private_targets);
        assert_eq!(cfg.delivery_timeout, Duration::from_secs(15));
    }

    #[test]
    fn production_refuses_private_targets_by_default() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WIREHOOK_ENV", "production"));
        let cfg = ApiConfig::from_env(&env(&pairs)).unwrap();
        assert!(!cfg.allow_private_targets);
    }

    #[test]
    fn missing_jwt_secret_names_the_variable() {
        let err = ApiConfig::from_env(&env(&BASE[..1])).err().unwrap();
        assert_eq!(err.to_string(), "JWT_SECRET is not set");
    }

    #[test]
    fn malformed_listen_address_is_refused() {
        let mut pairs = BASE.to_vec();
        pairs.push(("API_ADDR", "localhost"));
        let err = ApiConfig::from_env(&env(&pairs)).err().unwrap();
        assert!(err.to_string().starts_with("API_ADDR is invalid"), "{err}");
    }

    #[test]
    fn production_enforces_allow_lists() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WIREHOOK_ENV", "production"));
        let cfg = ApiConfig::from_env(&env(&pairs)).unwrap();
        assert!(cfg.inbound.enforce_allow_lists);
    }

    #[test]
    fn a_malformed_cidr_names_the_variable() {
        let mut pairs = BASE.to_vec();
        pairs.push(("TRUSTED_PROXIES", "10.0.0.0/8, not-an-ip"));
        let err = ApiConfig::from_env(&env(&pairs)).err().unwrap();
        assert!(
            err.to_string().starts_with("TRUSTED_PROXIES is invalid"),
            "{err}"
        );
    }

    #[test]
    fn unknown_environment_is_refused() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WIREHOOK_ENV", "prod"));
        assert!(ApiConfig::from_env(&env(&pairs)).is_err());
    }
}
