//! What a soak run sends and how its receivers answer: fixed by each delivery's `webhook-id`,
//! so the run knows every event's fate without asking the database.
//!
//! [`CONFIGS`] configurations, each subscribed to `call.completed` for one campaign; SignalWire
//! webhooks go to the campaigns in turn, so every source event fans out to exactly one
//! delivery. The receiver answers by a hash of the `webhook-id`: [`FAILING_PCT`]% of the
//! deliveries always get 500 (they end `failed` after [`MAX_ATTEMPTS`]), [`HANGING_PCT`]%
//! always hang past the workers' delivery timeout (they end `failed` too), the rest get 200 at
//! once. Failures are spread over every endpoint rather than given to endpoints of their own:
//! a failing endpoint takes one attempt at a time, so one that hangs could not keep up with 1%
//! of a steady load and its backlog would grow whatever the service did.

use std::time::Duration;

use serde_json::{Value, json};

use wirehook_testkit::receiver::Reply;

/// Configurations (endpoints) of a run.
pub const CONFIGS: usize = 8;
/// Attempts of a delivery that never succeeds.
pub const MAX_ATTEMPTS: u32 = 3;
/// Share of deliveries whose receiver always answers 500, in percent.
pub const FAILING_PCT: u64 = 5;
/// Share of deliveries whose receiver always hangs, in percent.
pub const HANGING_PCT: u64 = 1;
/// How long a hanging receiver waits before it answers: past the workers' default
/// `DELIVERY_TIMEOUT_SECS` (15 s), so nobody is listening by then.
pub const HANG: Duration = Duration::from_secs(20);

/// What becomes of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Answered 200 at once: ends `delivered`.
    Delivered,
    /// Answered 500 every time: ends `failed`.
    Failing,
    /// Never answered in time: ends `failed`.
    Hanging,
}

impl Fate {
    /// The fate of the delivery with `webhook_id` (FNV-1a of the id, modulo 100).
    pub fn of(webhook_id: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in webhook_id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        match hash % 100 {
            n if n < FAILING_PCT => Self::Failing,
            n if n < FAILING_PCT + HANGING_PCT => Self::Hanging,
            _ => Self::Delivered,
        }
    }

    /// What the receiver answers every attempt of a delivery with this fate.
    pub fn reply(self) -> Reply {
        match self {
            Self::Delivered => Reply::Status(200),
            Self::Failing => Reply::Status(500),
            Self::Hanging => Reply::Hang(HANG),
        }
    }
}

/// The `retryConfig` of every configuration: [`MAX_ATTEMPTS`] attempts, 2 s and then 4 s
/// apart, so a failing delivery is final within a minute even when it hangs every time.
pub fn retry_config() -> Value {
    json!({"maxAttempts": MAX_ATTEMPTS, "initialDelay": 2, "maxDelay": 10, "backoffFactor": 2})
}

/// The campaign of configuration `k`.
pub fn campaign(k: usize) -> String {
    format!("soak-{}", k % CONFIGS)
}

/// Receiver path of configuration `k`.
pub fn path(k: usize) -> String {
    format!("/c/{k}")
}

/// The `POST /api/webhooks/config` body of configuration `k`, delivering to `url`.
pub fn config_body(k: usize, url: &str) -> Value {
    json!({
        "name": format!("soak {}", path(k)),
        "url": url,
        "eventTypes": ["call.completed"],
        "status": "active",
        "retryConfig": retry_config(),
        "filters": {"campaigns": [campaign(k)]},
    })
}

/// The SignalWire webhook of source event `i`: call id `soak-<i>`, campaigns in turn.
pub fn source_body(i: u64) -> Vec<u8> {
    let k = (i % CONFIGS as u64) as usize;
    crate::load::signalwire_call_completed(&format!("soak-{i}"), &campaign(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_come_in_the_planned_shares() {
        let n = 100_000;
        let (mut failing, mut hanging) = (0, 0);
        for i in 0..n {
            match Fate::of(&format!("msg_{i:026}")) {
                Fate::Failing => failing += 1,
                Fate::Hanging => hanging += 1,
                Fate::Delivered => {}
            }
        }
        let pct = |k: u64| k as f64 * 100.0 / n as f64;
        assert!((pct(failing) - FAILING_PCT as f64).abs() < 0.5, "{failing}");
        assert!((pct(hanging) - HANGING_PCT as f64).abs() < 0.3, "{hanging}");
    }

    #[test]
    fn a_delivery_keeps_its_fate_on_every_attempt() {
        let id = (0..)
            .map(|i| format!("msg_{i}"))
            .find(|id| Fate::of(id) == Fate::Failing)
            .unwrap_or_default();
        assert_eq!(Fate::of(&id).reply(), Reply::Status(500));
        assert_eq!(Fate::of(&id), Fate::of(&id.clone()));
    }
}
