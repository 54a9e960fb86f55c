//! The worker's settings: the shared part plus the replica's own.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use super::common::{Common, Environment};
use super::env::{Env, SettingsError, invalid, process};
use crate::http_client::ClientConfig;

/// Everything a worker replica needs, validated. The shared fields are also kept flat, as the
/// runtime reads them.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The part the api reads alike.
    pub common: Common,
    /// `DATABASE_URL`: a `postgres://` or `postgresql://` URL.
    pub database_url: SecretString,
    /// `WORKER_CONCURRENCY`: deliveries in flight per replica, and the delivery jobs it claims at
    /// once (1–1024, default 256).
    pub concurrency: usize,
    /// `DELIVERY_TIMEOUT_SECS`: total time for one attempt (1–300 s, default 15).
    pub delivery_timeout: Duration,
    /// `WIREHOOK_ENV`: `production` (default) or `development`.
    pub environment: Environment,
    /// `ALLOW_PRIVATE_TARGETS`: default true in development, false in production.
    pub allow_private_targets: bool,
    /// `METRICS_ADDR`: where `/metrics` and `/healthz` listen (default `127.0.0.1:9091`).
    pub metrics_addr: SocketAddr,
    /// `WORKER_POLL_INTERVAL_MS`: how often an idle replica looks for jobs whose scheduled
    /// time has come (10–60000 ms, default 500). New jobs wake replicas at once (LISTEN).
    pub poll_interval: Duration,
    /// `WORKER_HEARTBEAT_SECS`: how often the replica renews its lease (1–300 s, default 5).
    pub heartbeat_interval: Duration,
    /// `WORKER_SHUTDOWN_GRACE_SECS`: how long in-flight jobs may run after SIGTERM
    /// (0–3600 s, default 30).
    pub shutdown_grace: Duration,
    /// `WORKER_NAME`: the replica's apalis worker id, unique among live replicas (no spaces
    /// or `~`).
    /// Default: host name, pid and a random suffix, so it is also unique per start.
    pub worker_name: String,
    /// `AUTO_DISABLE_AFTER_HOURS`: decimal hours an endpoint may fail continuously (with at
    /// least 10 failed attempts) before it is disabled (default 120; 0 never disables).
    pub auto_disable_after: Option<Duration>,
    /// `RETENTION_DAYS`: final-state events older than this are purged (default 30; 0 keeps
    /// everything). `RETENTION_SECS`, when set, overrides it in seconds (for soak runs).
    pub retention: Option<Duration>,
    /// `RETENTION_INTERVAL_SECS`: how often one replica purges (60–86400 s, default 3600).
    pub retention_interval: Duration,
    /// `QUEUE_SAMPLE_SECS`: how often one replica samples the queue gauges (1–3600 s, default 5).
    pub queue_sample_interval: Duration,
    /// `JOB_HISTORY_SECS`: how long finished jobs stay in `apalis.jobs` for debugging before
    /// the maintenance leader deletes them (0–86400 s, default 300).
    pub job_history: Duration,
}

impl WorkerSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::read(&process())
    }

    /// Reads settings through `lookup` (a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        Self::read(&Env::new(lookup))
    }

    fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, SettingsError> {
        let common = Common::read(env)?;
        // The default is measured: see bench/PROFILE.md (concurrency 64 against 256).
        let concurrency = env.ranged("WORKER_CONCURRENCY", 256, 1, 1024)?;
        let poll_ms = env.ranged("WORKER_POLL_INTERVAL_MS", 500, 10, 60_000)?;
        let heartbeat_secs = env.ranged("WORKER_HEARTBEAT_SECS", 5, 1, 300)?;
        let grace_secs = env.ranged("WORKER_SHUTDOWN_GRACE_SECS", 30, 0, 3600)?;
        let retention_days = env.ranged("RETENTION_DAYS", 30, 0, 36_500)?;
        let retention_secs = match env.get("RETENTION_SECS") {
            None => retention_days * 86_400,
            Some(_) => env.ranged("RETENTION_SECS", 0, 0, 36_500 * 86_400)?,
        };
        let retention_interval = env.ranged("RETENTION_INTERVAL_SECS", 3600, 60, 86_400)?;
        let sample_secs = env.ranged("QUEUE_SAMPLE_SECS", 5, 1, 3600)?;
        let job_history_secs = env.ranged("JOB_HISTORY_SECS", 300, 0, 86_400)?;
        let auto_disable_hours = match env.get("AUTO_DISABLE_AFTER_HOURS") {
            None => 120.0,
            Some(raw) => match raw.parse::<f64>() {
                Ok(h) if (0.0..=87_600.0).contains(&h) => h,
                _ => {
                    return Err(invalid(
                        "AUTO_DISABLE_AFTER_HOURS",
                        format!("`{raw}`: expected hours between 0 and 87600, e.g. 120 or 0.5"),
                    ));
                }
            },
        };

        let metrics_addr = match env.get("METRICS_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 9091)),
            Some(raw) => raw.parse().map_err(|e| {
                invalid(
                    "METRICS_ADDR",
                    format!("`{raw}`: {e} (expected host:port, e.g. 0.0.0.0:9091)"),
                )
            })?,
        };

        let worker_name = match env.get("WORKER_NAME") {
            None => default_worker_name(),
            Some(name) => {
                // `~` separates the name from a restarted apalis worker's number.
                let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '~';
                if name.len() > 200 || name.chars().any(bad_char) {
                    return Err(invalid(
                        "WORKER_NAME",
                        "use at most 200 characters, without spaces or `~`",
                    ));
                }
                name
            }
        };

        Ok(Self {
            database_url: common.database_url.clone(),
            concurrency: concurrency as usize,
            delivery_timeout: common.delivery_timeout,
            environment: common.environment,
            allow_private_targets: common.allow_private_targets,
            metrics_addr,
            poll_interval: Duration::from_millis(poll_ms),
            heartbeat_interval: Duration::from_secs(heartbeat_secs),
            shutdown_grace: Duration::from_secs(grace_secs),
            worker_name,
            auto_disable_after: (auto_disable_hours > 0.0)
                .then(|| Duration::from_secs_f64(auto_disable_hours * 3600.0)),
            retention: (retention_secs > 0).then(|| Duration::from_secs(retention_secs)),
            retention_interval: Duration::from_secs(retention_interval),
            queue_sample_interval: Duration::from_secs(sample_secs),
            job_history: Duration::from_secs(job_history_secs),
            common,
        })
    }

    /// The delivery client's settings: this timeout and SSRF switch, `wirehook/<version>`.
    pub fn client_config(&self) -> ClientConfig {
        self.common.client_config()
    }
}

/// `host-pid-xxxxxx`: the host name and pid say where the replica runs; the random suffix
/// keeps a restarted process (pid 1 again in a container) from inheriting a dead one's jobs.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let suffix = ulid::Ulid::generate().to_string().to_lowercase();
    // The last characters of a ULID are its random part.
    let suffix = &suffix[suffix.len() - 6..];
    format!("{host}-{}-{suffix}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    const URL: (&str, &str) = ("DATABASE_URL", "postgres://postgres@127.0.0.1/x");

    /// A valid `WIREHOOK_ENCRYPTION_KEY` (32 bytes of 0x01).
    const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    /// Settings from `pairs`, with an encryption key unless `pairs` sets one.
    fn read(pairs: &[(&str, &str)]) -> Result<WorkerSettings, SettingsError> {
        let mut all = vec![("WIREHOOK_ENCRYPTION_KEY", KEY)];
        all.extend_from_slice(pairs);
        read_exact(&all)
    }

    fn read_exact(pairs: &[(&str, &str)]) -> Result<WorkerSettings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkerSettings::from_lookup(|k| map.get(k).cloned())
    }

    fn error_for(pairs: &[(&str, &str)]) -> String {
        let mut all = vec![URL];
        all.extend_from_slice(pairs);
        read(&all).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_design() {
        let s = read(&[URL]).unwrap();
        assert_eq!(
            s.database_url.expose_secret(),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(s.concurrency, 256);
        assert_eq!(s.delivery_timeout, Duration::from_secs(15));
        assert_eq!(s.environment, Environment::Production);
        assert!(!s.allow_private_targets);
        assert_eq!(s.metrics_addr.to_string(), "127.0.0.1:9091");
        assert_eq!(s.poll_interval, Duration::from_millis(500));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.auto_disable_after, Some(Duration::from_secs(120 * 3600)));
        assert_eq!(s.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(s.retention_interval, Duration::from_secs(3600));
        assert_eq!(s.queue_sample_interval, Duration::from_secs(5));
        assert_eq!(s.job_history, Duration::from_secs(300));
        let pid = format!("-{}-", std::process::id());
        assert!(s.worker_name.contains(&pid), "{}", s.worker_name);
    }

    #[test]
    fn auto_disable_hours_are_decimal_and_zero_turns_it_off() {
        let half = read(&[URL, ("AUTO_DISABLE_AFTER_HOURS", "0.5")]).unwrap();
        assert_eq!(half.auto_disable_after, Some(Duration::from_secs(1800)));
        let off = read(&[URL, ("AUTO_DISABLE_AFTER_HOURS", "0")]).unwrap();
        assert_eq!(off.auto_disable_after, None);
    }

    #[test]
    fn invalid_auto_disable_hours() {
        for bad in ["-1", "soon", "NaN"] {
            let err = error_for(&[("AUTO_DISABLE_AFTER_HOURS", bad)]);
            assert!(
                err.starts_with("AUTO_DISABLE_AFTER_HOURS is invalid"),
                "{err}"
            );
        }
    }

    #[test]
    fn zero_retention_days_keeps_everything() {
        let s = read(&[URL, ("RETENTION_DAYS", "0")]).unwrap();
        assert_eq!(s.retention, None);
    }

    #[test]
    fn retention_secs_overrides_retention_days() {
        let s = read(&[URL, ("RETENTION_DAYS", "7"), ("RETENTION_SECS", "90")]).unwrap();
        assert_eq!(s.retention, Some(Duration::from_secs(90)));
        let off = read(&[URL, ("RETENTION_SECS", "0")]).unwrap();
        assert_eq!(off.retention, None);
        let err = error_for(&[("RETENTION_SECS", "2m")]);
        assert!(err.starts_with("RETENTION_SECS is invalid"), "{err}");
    }

    #[test]
    fn default_names_differ_per_start() {
        assert_ne!(default_worker_name(), default_worker_name());
    }

    #[test]
    fn every_setting_can_be_overridden() {
        let s = read(&[
            ("DATABASE_URL", "postgresql://u:p@db:5432/wirehook"),
            ("WORKER_CONCURRENCY", "64"),
            ("DELIVERY_TIMEOUT_SECS", "300"),
            ("WIREHOOK_ENV", "production"),
            ("ALLOW_PRIVATE_TARGETS", "true"),
            ("METRICS_ADDR", "0.0.0.0:9100"),
            ("WORKER_POLL_INTERVAL_MS", "100"),
            ("WORKER_HEARTBEAT_SECS", "2"),
            ("WORKER_SHUTDOWN_GRACE_SECS", "0"),
            ("WORKER_NAME", "pod-abc"),
        ])
        .unwrap();
        assert_eq!(s.concurrency, 64);
        assert_eq!(s.delivery_timeout, Duration::from_secs(300));
        assert_eq!(s.environment, Environment::Production);
        assert!(s.allow_private_targets);
        assert_eq!(s.metrics_addr.to_string(), "0.0.0.0:9100");
        assert_eq!(s.poll_interval, Duration::from_millis(100));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(s.shutdown_grace, Duration::ZERO);
        assert_eq!(s.worker_name, "pod-abc");
    }

    #[test]
    fn without_wirehook_env_the_guards_are_on() {
        let s = read(&[URL]).unwrap();
        assert_eq!(s.environment, Environment::Production);
        assert!(!s.allow_private_targets);
        assert!(!s.client_config().allow_private_targets);
    }

    #[test]
    fn development_is_only_what_is_asked_for() {
        let s = read(&[URL, ("WIREHOOK_ENV", "development")]).unwrap();
        assert_eq!(s.environment, Environment::Development);
        assert!(s.allow_private_targets);
    }

    #[test]
    fn production_refuses_to_start_without_an_encryption_key() {
        let e = read_exact(&[URL]).unwrap_err().to_string();
        assert!(
            e.starts_with("WIREHOOK_ENCRYPTION_KEY is invalid: required in production"),
            "{e}"
        );
    }

    #[test]
    fn development_without_a_key_uses_the_development_key() {
        let s = read_exact(&[URL, ("WIREHOOK_ENV", "development")]).unwrap();
        assert_eq!(
            s.common.keyring.source(),
            crate::secrets::KeySource::Development
        );
    }

    #[test]
    fn a_malformed_encryption_key_names_the_variable() {
        let e = error_for(&[("WIREHOOK_ENCRYPTION_KEY", "c2hvcnQ=")]);
        assert_eq!(
            e,
            "WIREHOOK_ENCRYPTION_KEY is invalid: key 1 decodes to 5 bytes; 32 are required"
        );
    }

    #[test]
    fn production_guards_private_targets_by_default() {
        let s = read(&[URL, ("WIREHOOK_ENV", "production")]).unwrap();
        assert!(!s.allow_private_targets);
        let s = read(&[URL, ("ALLOW_PRIVATE_TARGETS", "false")]).unwrap();
        assert!(!s.allow_private_targets);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = read(&[URL, ("WORKER_CONCURRENCY", " "), ("WORKER_NAME", "")]).unwrap();
        assert_eq!(s.concurrency, 256);
        assert!(!s.worker_name.is_empty());
    }

    #[test]
    fn client_config_carries_timeout_ssrf_switch_and_user_agent() {
        let s = read(&[URL, ("WIREHOOK_ENV", "production")]).unwrap();
        let c = s.client_config();
        assert_eq!(c.timeout, Duration::from_secs(15));
        assert!(!c.allow_private_targets);
        assert_eq!(
            c.user_agent,
            concat!("wirehook/", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn missing_database_url() {
        assert_eq!(
            read(&[]).unwrap_err().to_string(),
            "DATABASE_URL is not set"
        );
        assert_eq!(
            read(&[("DATABASE_URL", "  ")]).unwrap_err(),
            SettingsError::Missing("DATABASE_URL")
        );
    }

    #[test]
    fn invalid_database_url() {
        assert_eq!(
            read(&[("DATABASE_URL", "mysql://x")])
                .unwrap_err()
                .to_string(),
            "DATABASE_URL is invalid: expected a postgres:// URL"
        );
    }

    #[test]
    fn invalid_concurrency() {
        for bad in ["0", "1025", "-1", "many", "3.5"] {
            let e = error_for(&[("WORKER_CONCURRENCY", bad)]);
            assert!(e.starts_with("WORKER_CONCURRENCY is invalid: "), "{e}");
        }
        assert_eq!(
            error_for(&[("WORKER_CONCURRENCY", "0")]),
            "WORKER_CONCURRENCY is invalid: must be between 1 and 1024"
        );
    }

    #[test]
    fn invalid_delivery_timeout() {
        for bad in ["0", "301", "15s"] {
            let e = error_for(&[("DELIVERY_TIMEOUT_SECS", bad)]);
            assert!(e.starts_with("DELIVERY_TIMEOUT_SECS is invalid: "), "{e}");
        }
    }

    #[test]
    fn invalid_environment() {
        assert_eq!(
            error_for(&[("WIREHOOK_ENV", "staging")]),
            "WIREHOOK_ENV is invalid: `staging` is not `development` or `production`"
        );
    }

    #[test]
    fn invalid_allow_private_targets() {
        assert_eq!(
            error_for(&[("ALLOW_PRIVATE_TARGETS", "maybe")]),
            "ALLOW_PRIVATE_TARGETS is invalid: `maybe` is not true or false"
        );
    }

    #[test]
    fn invalid_metrics_addr() {
        for bad in ["localhost", "127.0.0.1", "127.0.0.1:99999"] {
            let e = error_for(&[("METRICS_ADDR", bad)]);
            assert!(e.starts_with("METRICS_ADDR is invalid: "), "{e}");
        }
    }

    #[test]
    fn invalid_poll_interval() {
        for bad in ["0", "9", "60001", "fast"] {
            let e = error_for(&[("WORKER_POLL_INTERVAL_MS", bad)]);
            assert!(e.starts_with("WORKER_POLL_INTERVAL_MS is invalid: "), "{e}");
        }
    }

    #[test]
    fn invalid_heartbeat() {
        for bad in ["0", "301", "x"] {
            let e = error_for(&[("WORKER_HEARTBEAT_SECS", bad)]);
            assert!(e.starts_with("WORKER_HEARTBEAT_SECS is invalid: "), "{e}");
        }
    }

    #[test]
    fn invalid_shutdown_grace() {
        for bad in ["3601", "-5", "soon"] {
            let e = error_for(&[("WORKER_SHUTDOWN_GRACE_SECS", bad)]);
            assert!(
                e.starts_with("WORKER_SHUTDOWN_GRACE_SECS is invalid: "),
                "{e}"
            );
        }
    }

    #[test]
    fn invalid_worker_name() {
        let long = "x".repeat(201);
        for bad in ["two words", "pod~1", long.as_str()] {
            let e = error_for(&[("WORKER_NAME", bad)]);
            assert!(e.starts_with("WORKER_NAME is invalid: "), "{e}");
        }
    }

    #[test]
    fn errors_are_one_line() {
        for e in [
            error_for(&[("WORKER_CONCURRENCY", "0")]),
            error_for(&[("METRICS_ADDR", "nope")]),
            read(&[]).unwrap_err().to_string(),
        ] {
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
