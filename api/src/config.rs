//! The api's settings: the shared part ([`Common`]) plus the HTTP edge's own, read once from the
//! environment through the core's one reader ([`Env`]) and validated at start.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::time::Duration;
use url::Url;
use wirehook_core::settings::{Common, Env, invalid, optional_database_url};
pub use wirehook_core::settings::{Environment, SettingsError as ConfigError};

use crate::inbound::{CidrList, ELEVENLABS_EGRESS_IPS};
use crate::refusals::RefusalLimit;

/// JWT settings for the REST API.
#[derive(Clone)]
pub struct JwtConfig {
    pub secret: SecretString,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl JwtConfig {
    /// Reads `JWT_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let secret = env.required("JWT_SECRET")?;
        if secret.len() < 16 {
            return Err(invalid("JWT_SECRET", "use at least 16 characters"));
        }
        Ok(Self {
            secret: SecretString::from(secret),
            issuer: env.get("JWT_ISSUER"),
            audience: env.get("JWT_AUDIENCE"),
        })
    }
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
    /// `INBOUND_REFUSALS_PER_MINUTE`: refused requests recorded one by one per client address
    /// and minute (1–100000, default 100); the rest are counted and summarized.
    pub refusal_limit: RefusalLimit,
}

impl InboundConfig {
    /// Reads the inbound settings; `environment` decides whether allow lists are enforced.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        public_base_url: Url,
        environment: Environment,
    ) -> Result<Self, ConfigError> {
        let cidrs = |name: &'static str, default: &str| -> Result<CidrList, ConfigError> {
            let raw = env.get(name).unwrap_or_else(|| default.to_owned());
            raw.parse().map_err(|e| invalid(name, format!("{e}")))
        };
        Ok(Self {
            public_base_url,
            signalwire_signing_key: env.get("SIGNALWIRE_SIGNING_KEY").map(SecretString::from),
            elevenlabs_webhook_secret: env.get("ELEVENLABS_WEBHOOK_SECRET").map(SecretString::from),
            enforce_allow_lists: environment == Environment::Production,
            signalwire_allowed_ips: cidrs("SIGNALWIRE_ALLOWED_IPS", "")?,
            elevenlabs_allowed_ips: cidrs("ELEVENLABS_ALLOWED_IPS", ELEVENLABS_EGRESS_IPS)?,
            trusted_proxies: cidrs("TRUSTED_PROXIES", "")?,
            refusal_limit: RefusalLimit::per_minute(env.ranged(
                "INBOUND_REFUSALS_PER_MINUTE",
                100,
                1,
                100_000,
            )? as u32),
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
            refusal_limit: RefusalLimit::per_minute(100),
        }
    }
}

/// How much work the api takes on at once; past these bounds it answers `503 overloaded` with
/// `Retry-After` instead of queueing, so its memory is bounded by design, not by the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `MAX_CONNECTIONS`: open client connections; one more is answered 503 and closed.
    pub max_connections: usize,
    /// `MAX_INGEST_IN_FLIGHT`: provider webhooks and event publishes being served (and their
    /// events waiting for the group commit).
    pub ingest_in_flight: usize,
    /// `INGEST_LATENCY_TARGET_MS`: while the ingest bound is reached and even the fastest
    /// answers take longer than this, the bound is cut (down to 8), and raised back when one is
    /// fast (`None`: fixed bound; [`crate::ingest_limit`]).
    pub ingest_latency_target: Option<Duration>,
    /// `MAX_API_IN_FLIGHT`: other `/api/` requests being served.
    pub api_in_flight: usize,
    /// `MAX_BODY_BYTES_IN_FLIGHT`: declared body bytes of the requests being served (a body
    /// without a length counts as the 1 MiB it may grow to).
    pub body_bytes_in_flight: usize,
    /// `REQUEST_TIMEOUT_SECS`: a request not answered within this (a slow body, a slow
    /// database) is answered 503 and its work dropped.
    pub request_timeout: Duration,
}

impl Default for Limits {
    /// The defaults of the README's settings table (tuned by `bench --only overload`).
    fn default() -> Self {
        Self {
            // Against 1,024 under 4,096 keep-alive connections: a fifth less memory at the
            // peak and faster accepted answers (`bench/PROFILE.md`, `MAX_CONNECTIONS` 512).
            max_connections: 512,
            ingest_in_flight: 96,
            ingest_latency_target: Some(Duration::from_millis(10)),
            api_in_flight: 64,
            body_bytes_in_flight: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Reads `MAX_CONNECTIONS`, `MAX_INGEST_IN_FLIGHT`, `INGEST_LATENCY_TARGET_MS`, `MAX_API_IN_FLIGHT`,
    /// `MAX_BODY_BYTES_IN_FLIGHT` and `REQUEST_TIMEOUT_SECS`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let count = |name, default: usize, max| -> Result<usize, ConfigError> {
            Ok(env.ranged(name, default as u64, 1, max)? as usize)
        };
        let body_bytes_in_flight =
            count("MAX_BODY_BYTES_IN_FLIGHT", d.body_bytes_in_flight, 1 << 32)?;
        if body_bytes_in_flight < crate::app::MAX_BODY_BYTES {
            return Err(invalid(
                "MAX_BODY_BYTES_IN_FLIGHT",
                "must be at least 1048576 (one largest body)",
            ));
        }
        Ok(Self {
            max_connections: count("MAX_CONNECTIONS", d.max_connections, 1_000_000)?,
            ingest_in_flight: count("MAX_INGEST_IN_FLIGHT", d.ingest_in_flight, 100_000)?,
            ingest_latency_target: match env.ranged(
                "INGEST_LATENCY_TARGET_MS",
                d.ingest_latency_target.map_or(0, |t| t.as_millis() as u64),
                0,
                60_000,
            )? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            api_in_flight: count("MAX_API_IN_FLIGHT", d.api_in_flight, 100_000)?,
            body_bytes_in_flight,
            request_timeout: Duration::from_secs(env.ranged(
                "REQUEST_TIMEOUT_SECS",
                d.request_timeout.as_secs(),
                1,
                3600,
            )?),
        })
    }
}

/// A streaming standby that history lists are read from (see [`crate::read_replica`]).
#[derive(Clone)]
pub struct ReadReplicaConfig {
    /// `DATABASE_READ_URL`: a `postgres://` URL of a hot standby of `DATABASE_URL`'s server.
    pub url: SecretString,
    /// `DATABASE_READ_MAX_LAG_SECS`: past this lag (1–3600 s, default 10) lists are read from
    /// the primary.
    pub max_lag: Duration,
}

impl ReadReplicaConfig {
    /// Reads `DATABASE_READ_URL` and `DATABASE_READ_MAX_LAG_SECS`; `None` without the URL.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Option<Self>, ConfigError> {
        let max_lag = Duration::from_secs(env.ranged("DATABASE_READ_MAX_LAG_SECS", 10, 1, 3600)?);
        Ok(optional_database_url(env, "DATABASE_READ_URL")?.map(|url| Self { url, max_lag }))
    }
}

/// Everything `api serve` needs.
#[derive(Clone)]
pub struct ApiConfig {
    /// The part the worker reads alike (database, environment, delivery client).
    pub common: Common,
    pub api_addr: SocketAddr,
    pub jwt: JwtConfig,
    pub inbound: InboundConfig,
    pub limits: Limits,
    /// `DATABASE_READ_URL` and its lag bound, when set.
    pub read_replica: Option<ReadReplicaConfig>,
}

impl ApiConfig {
    /// Reads and validates every variable `api serve` uses.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let common = Common::read(env)?;
        let api_addr: SocketAddr =
            env.parsed("API_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
        let public_base_url = env
            .get("PUBLIC_BASE_URL")
            .unwrap_or_else(|| format!("http://{api_addr}"));
        let public_base_url =
            Url::parse(&public_base_url).map_err(|e| invalid("PUBLIC_BASE_URL", e.to_string()))?;
        Ok(Self {
            api_addr,
            jwt: JwtConfig::from_env(env)?,
            inbound: InboundConfig::from_env(env, public_base_url, common.environment)?,
            limits: Limits::from_env(env)?,
            read_replica: ReadReplicaConfig::from_env(env)?,
            common,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::new(move |k: &str| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
        ("JWT_SECRET", "0123456789abcdef0123"),
        (
            "WIREHOOK_ENCRYPTION_KEY",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        ),
    ];

    #[test]
    fn defaults_follow_the_design() {
        let cfg = ApiConfig::from_env(&env(&BASE)).unwrap();
        assert_eq!(cfg.common.environment, Environment::Production);
        assert!(cfg.inbound.enforce_allow_lists);
        assert!(!cfg.common.allow_private_targets);
        assert_eq!(cfg.inbound.refusal_limit, RefusalLimit::per_minute(100));
    }

    #[test]
    fn development_defaults_follow_the_design() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WIREHOOK_ENV", "development"));
        let cfg = ApiConfig::from_env(&env(&pairs)).unwrap();
        assert_eq!(cfg.api_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            cfg.inbound.public_base_url.as_str(),
            "http://127.0.0.1:8080/"
        );
        assert!(!cfg.inbound.enforce_allow_lists);
        assert!(cfg.inbound.trusted_proxies.is_empty());
        assert!(!cfg.inbound.elevenlabs_allowed_ips.is_empty());
        assert_eq!(cfg.common.environment, Environment::Development);
        assert!(cfg.common.allow_private_targets);
        assert_eq!(cfg.common.delivery_timeout, Duration::from_secs(15));
        assert_eq!(cfg.limits, Limits::default());
    }

    #[test]
    fn limits_are_read_and_a_budget_below_one_body_is_refused() {
        let mut pairs = BASE.to_vec();
        pairs.push(("MAX_INGEST_IN_FLIGHT", "8"));
        pairs.push(("REQUEST_TIMEOUT_SECS", "3"));
        let cfg = ApiConfig::from_env(&env(&pairs)).unwrap();
        assert_eq!(cfg.limits.ingest_in_flight, 8);
        assert_eq!(cfg.limits.request_timeout, Duration::from_secs(3));
        pairs.push(("MAX_BODY_BYTES_IN_FLIGHT", "1000"));
        let err = ApiConfig::from_env(&env(&pairs)).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("MAX_BODY_BYTES_IN_FLIGHT is invalid"),
            "{err}"
        );
    }

    #[test]
    fn history_reads_go_to_the_primary_unless_a_read_url_is_set() {
        let cfg = ApiConfig::from_env(&env(&BASE)).unwrap();
        assert!(cfg.read_replica.is_none());
        let mut pairs = BASE.to_vec();
        pairs.push(("DATABASE_READ_URL", "postgres://postgres@127.0.0.1:5433/x"));
        let replica = ApiConfig::from_env(&env(&pairs)).unwrap().read_replica;
        assert_eq!(replica.map(|r| r.max_lag), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_read_url_that_is_not_postgres_names_the_variable() {
        let mut pairs = BASE.to_vec();
        pairs.push(("DATABASE_READ_URL", "mysql://replica/x"));
        let err = ApiConfig::from_env(&env(&pairs)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "DATABASE_READ_URL is invalid: expected a postgres:// URL"
        );
    }

    #[test]
    fn production_refuses_private_targets_by_default() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WIREHOOK_ENV", "production"));
        let cfg = ApiConfig::from_env(&env(&pairs)).unwrap();
        assert!(!cfg.common.allow_private_targets);
    }

    #[test]
    fn production_refuses_to_start_without_an_encryption_key() {
        let err = ApiConfig::from_env(&env(&BASE[..2])).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("WIREHOOK_ENCRYPTION_KEY is invalid: required in production"),
            "{err}"
        );
    }

    #[test]
    fn missing_jwt_secret_names_the_variable() {
        let err = ApiConfig::from_env(&env(&[BASE[0], BASE[2]]))
            .err()
            .unwrap();
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
    fn values_are_trimmed_and_flags_read_as_the_worker_reads_them() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WIREHOOK_ENV", " production "));
        pairs.push(("ALLOW_PRIVATE_TARGETS", " TRUE"));
        let cfg = ApiConfig::from_env(&env(&pairs)).unwrap();
        assert_eq!(cfg.common.environment, Environment::Production);
        assert!(cfg.common.allow_private_targets);
    }

    #[test]
    fn unknown_environment_is_refused() {
        let mut pairs = BASE.to_vec();
        pairs.push(("WIREHOOK_ENV", "prod"));
        assert!(ApiConfig::from_env(&env(&pairs)).is_err());
    }
}
