//! What a chaos run sends and how its receivers answer, fixed by the run's size and seed so a
//! failing run can be repeated.
//!
//! Twenty configurations, each subscribed to `call.completed` (SignalWire webhooks) and
//! `conversation.completed` (platform events) for one of five campaigns: every source event
//! fans out to exactly [`FAN_OUT`] of them. Receivers answer each attempt by a hash of the
//! seed, the `webhook-id` and the attempt's arrival number: 500 for [`SERVER_ERROR_PCT`]%,
//! a hang past the delivery timeout for [`HANG_PCT`]%, a reset connection for [`RESET_PCT`]%,
//! else 200. What the database must end up with follows from what each receiver answered.
//!
//! One configuration in [`ORDERED_EVERY`] (one per campaign) is ordered on `/callId` with
//! `onStuck: detach` and a hold longer than the run, so only a head that fails for good lets
//! its key move on while it is not delivered. SignalWire events are one call each; the
//! platform events of [`EVENTS_PER_CALL`] consecutive sources of one campaign share a call, so
//! each ordered key gets several events to keep in order.

use std::time::Duration;

use serde_json::{Value, json};

use wirehook_testkit::receiver::Reply;

/// Configurations in a run.
pub const CONFIGS: usize = 20;
/// Campaigns; configuration `k` filters on campaign `k % CAMPAIGNS`.
pub const CAMPAIGNS: usize = 5;
/// Outbound events per source event.
pub const FAN_OUT: usize = CONFIGS / CAMPAIGNS;
/// Attempts per delivery (the short retry policy).
pub const MAX_ATTEMPTS: i32 = 3;
/// Share of attempts answered 500, in percent.
pub const SERVER_ERROR_PCT: u64 = 20;
/// Share of attempts left hanging past the delivery timeout, in percent.
pub const HANG_PCT: u64 = 5;
/// Share of attempts whose connection is reset, in percent.
pub const RESET_PCT: u64 = 5;
/// Configuration `k` is ordered when `k % ORDERED_EVERY == ORDERED_EVERY - 1`: five of twenty,
/// whose campaigns are all five.
pub const ORDERED_EVERY: usize = 4;
/// Platform events per call (per ordered key) of one campaign.
pub const EVENTS_PER_CALL: usize = 4;
/// `DELIVERY_TIMEOUT_SECS` of the workers.
pub const DELIVERY_TIMEOUT_SECS: u64 = 1;
/// How long a hanging receiver waits before it answers (nobody is listening by then).
pub const HANG: Duration = Duration::from_millis(2500);

/// The `retryConfig` of every configuration: 3 attempts, about 1 s and then 2 s apart.
pub fn retry_config() -> Value {
    json!({"maxAttempts": MAX_ATTEMPTS, "initialDelay": 1, "maxDelay": 2, "backoffFactor": 2})
}

/// One configuration of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPlan {
    /// Its receiver path, `/c/<k>`.
    pub path: String,
    /// The one campaign it receives.
    pub campaign: String,
    /// Delivers each call's events in order.
    pub ordered: bool,
}

impl ConfigPlan {
    /// The `POST /api/webhooks/config` body delivering to `url`.
    pub fn body(&self, url: &str) -> Value {
        let mut body = json!({
            "name": format!("chaos {}", self.path),
            "url": url,
            "eventTypes": ["call.completed", "conversation.completed"],
            "status": "active",
            "retryConfig": retry_config(),
            "filters": {"campaigns": [self.campaign]},
        });
        if self.ordered {
            body["ordering"] =
                json!({"key": "/callId", "onStuck": "detach", "maxHoldSeconds": 86_400});
        }
        body
    }
}

/// The run's configurations.
pub fn configs() -> Vec<ConfigPlan> {
    (0..CONFIGS)
        .map(|k| ConfigPlan {
            path: format!("/c/{k}"),
            campaign: campaign(k),
            ordered: k % ORDERED_EVERY == ORDERED_EVERY - 1,
        })
        .collect()
}

fn campaign(n: usize) -> String {
    format!("campaign-{}", n % CAMPAIGNS)
}

/// Where a source event enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `POST /api/webhooks/signalwire`, signed as SignalWire signs.
    SignalWire,
    /// `POST /api/webhooks/events` with a JWT, with an idempotency key.
    Platform,
}

/// One event sent to the api.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEvent {
    /// How it enters.
    pub entry: Entry,
    /// Its identity: the SignalWire `call_id`, or the platform event's idempotency key.
    pub key: String,
    /// Its campaign.
    pub campaign: String,
    /// Platform events: the call it belongs to (`callId`), shared by [`EVENTS_PER_CALL`]
    /// platform events of its campaign.
    pub call: Option<String>,
}

impl SourceEvent {
    /// The request body (the same on every retry, so the api can de-duplicate it).
    pub fn body(&self) -> Vec<u8> {
        match self.entry {
            Entry::SignalWire => crate::load::signalwire_call_completed(&self.key, &self.campaign),
            Entry::Platform => json!({
                "eventType": "conversation.completed",
                "payload": {
                    "conversationId": self.key,
                    "campaignId": self.campaign,
                    "outcome": "lead_qualified",
                    "callId": self.call,
                },
                "idempotencyKey": self.key,
            })
            .to_string()
            .into_bytes(),
        }
    }
}

/// Source events for `outbound` outbound events (rounded up to a multiple of [`FAN_OUT`]):
/// SignalWire webhooks and platform events alternately, campaigns in turn.
pub fn sources(outbound: usize) -> Vec<SourceEvent> {
    (0..outbound.div_ceil(FAN_OUT))
        .map(|i| {
            let entry = if i % 2 == 0 {
                Entry::SignalWire
            } else {
                Entry::Platform
            };
            // Platform sources are the odd ones; those of one campaign come every tenth
            // source, so EVENTS_PER_CALL of them in a row share a call.
            let call = (entry == Entry::Platform).then(|| {
                format!(
                    "chaos-call-{}-{}",
                    i % (2 * CAMPAIGNS),
                    i / (2 * CAMPAIGNS * EVENTS_PER_CALL)
                )
            });
            SourceEvent {
                entry,
                key: format!("chaos-{i}"),
                campaign: campaign(i),
                call,
            }
        })
        .collect()
}

/// How a receiver answers arrival number `nth` (1, 2, …) of `webhook_id`.
pub fn reply(seed: u64, webhook_id: &str, nth: u32) -> Reply {
    let roll = mix(seed, webhook_id, nth) % 100;
    if roll < SERVER_ERROR_PCT {
        Reply::Status(500)
    } else if roll < SERVER_ERROR_PCT + HANG_PCT {
        Reply::Hang(HANG)
    } else if roll < SERVER_ERROR_PCT + HANG_PCT + RESET_PCT {
        Reply::Reset
    } else {
        Reply::Status(200)
    }
}

/// FNV-1a over the id, then SplitMix64 with the seed and arrival number: stable across
/// builds and platforms, unlike `std`'s hasher.
fn mix(seed: u64, webhook_id: &str, nth: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in webhook_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ seed.rotate_left(17) ^ u64::from(nth).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_event_matches_exactly_fan_out_configurations() {
        let configs = configs();
        for source in sources(40) {
            let matching = configs
                .iter()
                .filter(|c| c.campaign == source.campaign)
                .count();
            assert_eq!(matching, FAN_OUT, "{source:?}");
        }
    }

    #[test]
    fn ordered_configurations_cover_every_campaign_and_calls_hold_several_events_of_one() {
        let ordered: Vec<ConfigPlan> = configs().into_iter().filter(|c| c.ordered).collect();
        assert_eq!(ordered.len(), CAMPAIGNS);
        let campaigns: std::collections::BTreeSet<&str> =
            ordered.iter().map(|c| c.campaign.as_str()).collect();
        assert_eq!(campaigns.len(), CAMPAIGNS);
        let mut calls: std::collections::HashMap<String, Vec<String>> = Default::default();
        for source in sources(4000) {
            if let Some(call) = source.call {
                calls.entry(call).or_default().push(source.campaign);
            }
        }
        for (call, campaigns) in &calls {
            assert_eq!(campaigns.len(), EVENTS_PER_CALL, "{call}");
            assert!(
                campaigns.iter().all(|c| *c == campaigns[0]),
                "{call}: {campaigns:?}"
            );
        }
    }

    #[test]
    fn sources_cover_the_requested_outbound_events_with_both_entries() {
        let sources = sources(1000);
        assert_eq!(sources.len() * FAN_OUT, 1000);
        assert!(sources.iter().any(|s| s.entry == Entry::SignalWire));
        assert!(sources.iter().any(|s| s.entry == Entry::Platform));
    }

    #[test]
    fn replies_are_repeatable_and_follow_the_shares() {
        let mut counts = [0u32; 4];
        for i in 0..20_000 {
            let id = format!("msg_{i}");
            let r = reply(7, &id, 1);
            assert_eq!(r, reply(7, &id, 1));
            let slot = match r {
                Reply::Status(500) => 0,
                Reply::Hang(_) => 1,
                Reply::Reset => 2,
                _ => 3,
            };
            counts[slot] += 1;
        }
        let pct = |n: u32| f64::from(n) / 200.0;
        assert!((pct(counts[0]) - 20.0).abs() < 1.5, "{counts:?}");
        assert!((pct(counts[1]) - 5.0).abs() < 1.0, "{counts:?}");
        assert!((pct(counts[2]) - 5.0).abs() < 1.0, "{counts:?}");
    }

    #[test]
    fn a_retry_of_the_same_delivery_gets_an_independent_answer() {
        let differs = (0..200)
            .filter(|i| {
                let id = format!("msg_{i}");
                reply(7, &id, 1) != reply(7, &id, 2)
            })
            .count();
        assert!(differs > 20, "{differs}");
    }
}
