//! Property tests of the pure parts of delivery: Standard Webhooks signing and the retry schedule.
//!
//! Signing: a signature verifies (with an independent Standard Webhooks library) exactly when it
//! was computed with the receiver's key over the same id, timestamp and body bytes.
//! Retry schedule: for any valid policy, each delay is within ±20% of
//! `min(initialDelay × backoffFactor^(n-1), maxDelay)`, never above maxDelay, and the un-jittered
//! base never decreases from one attempt to the next.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use entity::RetryPolicy;
use hmac::{Hmac, KeyInit as _, Mac as _};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use sha2::Sha256;
use standardwebhooks::Webhook;
use wirehook_core::retry::{base_delay, next_delay};
use wirehook_core::signing::{SigningKey, sign};

/// Cases per property: enough to find edge cases, few enough to keep `just test` fast.
const CASES: u32 = 256;

/// Key bytes a configuration may hold: 8 to 128 bytes.
fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 8..=128)
}

/// A secret as users give it: `whsec_` + base64, or bare base64.
fn secret_of(key: &[u8], prefixed: bool) -> String {
    let encoded = STANDARD.encode(key);
    if prefixed {
        format!("whsec_{encoded}")
    } else {
        encoded
    }
}

/// Message ids as the engine makes them (`msg_` + ULID-like text).
fn msg_id() -> impl Strategy<Value = String> {
    "msg_[0-9A-Za-z]{1,32}"
}

/// Any bytes: what the HMAC covers.
fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..512)
}

/// A UTF-8 body (deliveries are JSON; the reference library refuses anything else).
fn text() -> impl Strategy<Value = Vec<u8>> {
    "(?s).{0,256}".prop_map(String::into_bytes)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn headers(msg_id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        HeaderValue::from_str(msg_id).expect("message id is a header value"),
    );
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).expect("signature is a header value"),
    );
    headers
}

/// Verifies like a receiver does, with the reference Standard Webhooks library.
fn receiver_accepts(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], sig: &str) -> bool {
    Webhook::new(secret)
        .expect("secret loads in the reference library")
        .verify(body, &headers(msg_id, timestamp, sig))
        .is_ok()
}

fn key(secret: &str) -> SigningKey {
    SigningKey::from_secret(secret).expect("valid secret")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn a_signature_is_the_hmac_of_id_timestamp_and_body(
        key_bytes in key_bytes(),
        prefixed in any::<bool>(),
        msg_id in msg_id(),
        timestamp in 0i64..=4_102_444_800,
        body in body(),
    ) {
        let signature = sign(&[key(&secret_of(&key_bytes, prefixed))], &msg_id, timestamp, &body);
        let mut mac = Hmac::<Sha256>::new_from_slice(&key_bytes).expect("any key length");
        mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
        mac.update(&body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        prop_assert_eq!(signature, expected);
    }

    #[test]
    fn the_right_key_over_the_exact_bytes_verifies(
        key_bytes in key_bytes(),
        prefixed in any::<bool>(),
        msg_id in msg_id(),
        body in text(),
    ) {
        let secret = secret_of(&key_bytes, prefixed);
        let timestamp = now();
        let signature = sign(&[key(&secret)], &msg_id, timestamp, &body);
        prop_assert!(receiver_accepts(&secret, &msg_id, timestamp, &body, &signature));
    }

    #[test]
    fn changing_any_byte_of_the_body_changes_the_signature(
        key_bytes in key_bytes(),
        msg_id in msg_id(),
        timestamp in 0i64..=4_102_444_800,
        body in proptest::collection::vec(any::<u8>(), 1..512),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let keys = [key(&secret_of(&key_bytes, true))];
        let mut tampered = body.clone();
        tampered[index.index(body.len())] ^= flip;
        prop_assert_ne!(
            sign(&keys, &msg_id, timestamp, &body),
            sign(&keys, &msg_id, timestamp, &tampered)
        );
    }

    #[test]
    fn changing_any_character_of_the_body_fails(
        key_bytes in key_bytes(),
        msg_id in msg_id(),
        body in "[ -~]{1,256}",
        index in any::<prop::sample::Index>(),
        replacement in "[ -~]",
    ) {
        let secret = secret_of(&key_bytes, true);
        let timestamp = now();
        let signature = sign(&[key(&secret)], &msg_id, timestamp, body.as_bytes());
        let mut tampered = body.clone().into_bytes();
        let at = index.index(tampered.len());
        prop_assume!(tampered[at] != replacement.as_bytes()[0]);
        tampered[at] = replacement.as_bytes()[0];
        prop_assert!(!receiver_accepts(&secret, &msg_id, timestamp, &tampered, &signature));
    }

    #[test]
    fn a_body_with_characters_added_or_removed_fails(
        key_bytes in key_bytes(),
        msg_id in msg_id(),
        body in "(?s).{1,256}",
        extra in any::<char>(),
        append in any::<bool>(),
    ) {
        let secret = secret_of(&key_bytes, true);
        let timestamp = now();
        let signature = sign(&[key(&secret)], &msg_id, timestamp, body.as_bytes());
        let mut changed = body.clone();
        if append {
            changed.push(extra);
        } else {
            changed.pop();
        }
        prop_assert!(!receiver_accepts(
            &secret, &msg_id, timestamp, changed.as_bytes(), &signature
        ));
    }

    #[test]
    fn another_message_id_fails(
        key_bytes in key_bytes(),
        msg_id in msg_id(),
        other_id in msg_id(),
        body in text(),
    ) {
        prop_assume!(msg_id != other_id);
        let secret = secret_of(&key_bytes, true);
        let timestamp = now();
        let signature = sign(&[key(&secret)], &msg_id, timestamp, &body);
        prop_assert!(!receiver_accepts(&secret, &other_id, timestamp, &body, &signature));
    }

    #[test]
    fn another_timestamp_fails(
        key_bytes in key_bytes(),
        msg_id in msg_id(),
        body in text(),
        // Within the receiver's 5 minute tolerance, so only the signature can refuse it.
        shift in (-240i64..=240).prop_filter("a different timestamp", |s| *s != 0),
    ) {
        let secret = secret_of(&key_bytes, true);
        let timestamp = now();
        let signature = sign(&[key(&secret)], &msg_id, timestamp, &body);
        prop_assert!(!receiver_accepts(&secret, &msg_id, timestamp + shift, &body, &signature));
    }

    #[test]
    fn another_key_fails(
        key_bytes in key_bytes(),
        other_bytes in key_bytes(),
        msg_id in msg_id(),
        body in text(),
    ) {
        prop_assume!(key_bytes != other_bytes);
        let timestamp = now();
        let signature = sign(&[key(&secret_of(&key_bytes, true))], &msg_id, timestamp, &body);
        let other = secret_of(&other_bytes, true);
        prop_assert!(!receiver_accepts(&other, &msg_id, timestamp, &body, &signature));
    }

    #[test]
    fn during_a_rotation_each_signing_key_verifies_and_no_other(
        new_bytes in key_bytes(),
        old_bytes in key_bytes(),
        stranger_bytes in key_bytes(),
        msg_id in msg_id(),
        body in text(),
    ) {
        prop_assume!(stranger_bytes != new_bytes && stranger_bytes != old_bytes);
        let (new, old) = (secret_of(&new_bytes, true), secret_of(&old_bytes, false));
        let timestamp = now();
        let signature = sign(&[key(&new), key(&old)], &msg_id, timestamp, &body);
        prop_assert!(receiver_accepts(&new, &msg_id, timestamp, &body, &signature));
        prop_assert!(receiver_accepts(&old, &msg_id, timestamp, &body, &signature));
        let stranger = secret_of(&stranger_bytes, true);
        prop_assert!(!receiver_accepts(&stranger, &msg_id, timestamp, &body, &signature));
    }
}

/// Policies the API accepts: 1–50 attempts, delays 1 s–7 days with maxDelay ≥ initialDelay,
/// factor 1–10.
fn valid_policy() -> impl Strategy<Value = RetryPolicy> {
    const WEEK: u32 = 7 * 86_400;
    (1u32..=50, 1u32..=WEEK, 0u32..=WEEK, 1.0f64..=10.0).prop_map(
        |(max_attempts, initial_delay, extra, backoff_factor)| RetryPolicy {
            max_attempts,
            initial_delay,
            max_delay: initial_delay.saturating_add(extra).min(WEEK),
            backoff_factor,
        },
    )
}

/// `min(initial × factor^(n-1), max)` in seconds, computed independently of the crate.
fn expected_base(attempt: u32, policy: &RetryPolicy) -> f64 {
    let exponent = f64::from(attempt.max(1) - 1);
    let raw = f64::from(policy.initial_delay) * policy.backoff_factor.powf(exponent);
    raw.min(f64::from(policy.max_delay))
}

/// Rounding to the millisecond, plus float noise.
const SLACK_SECS: f64 = 0.002;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn the_base_delay_is_initial_times_factor_to_the_n_minus_1_capped(
        policy in valid_policy(),
        attempt in 1u32..=60,
    ) {
        let base = base_delay(attempt, &policy).as_secs_f64();
        let expected = expected_base(attempt, &policy);
        prop_assert!(
            (base - expected).abs() <= SLACK_SECS + expected * 1e-9,
            "attempt {attempt}: {base} s, expected {expected} s"
        );
    }

    #[test]
    fn a_jittered_delay_is_within_20_percent_of_the_base_and_never_above_max_delay(
        policy in valid_policy(),
        attempt in 1u32..=60,
        jitter in -1.0f64..=1.0,
    ) {
        let base = expected_base(attempt, &policy);
        let max = Duration::from_secs(u64::from(policy.max_delay));
        let delay = next_delay(attempt, &policy, None, jitter);
        prop_assert!(delay <= max, "{delay:?} > maxDelay {max:?}");
        let secs = delay.as_secs_f64();
        prop_assert!(secs >= base * 0.8 - SLACK_SECS, "{secs} s < 80% of {base} s");
        prop_assert!(secs <= base * 1.2 + SLACK_SECS, "{secs} s > 120% of {base} s");
    }

    #[test]
    fn the_base_delay_never_decreases(
        policy in valid_policy(),
        attempt in 1u32..=60,
    ) {
        prop_assert!(base_delay(attempt, &policy) <= base_delay(attempt + 1, &policy));
    }

    #[test]
    fn a_retry_after_lengthens_the_delay_up_to_max_delay_only(
        policy in valid_policy(),
        attempt in 1u32..=60,
        jitter in -1.0f64..=1.0,
        retry_after_secs in 0u64..=2 * 604_800,
    ) {
        let max = Duration::from_secs(u64::from(policy.max_delay));
        let retry_after = Duration::from_secs(retry_after_secs);
        let without = next_delay(attempt, &policy, None, jitter);
        let with = next_delay(attempt, &policy, Some(retry_after), jitter);
        prop_assert!(with <= max);
        prop_assert!(with >= without);
        prop_assert!(with >= retry_after.min(max));
    }

    #[test]
    fn any_policy_and_input_gives_a_delay_within_max_delay(
        initial_delay in any::<u32>(),
        max_delay in any::<u32>(),
        backoff_factor in any::<f64>(),
        attempt in any::<u32>(),
        jitter in any::<f64>(),
        retry_after in proptest::option::of(any::<u64>()),
    ) {
        let policy = RetryPolicy { max_attempts: 5, initial_delay, max_delay, backoff_factor };
        let delay = next_delay(attempt, &policy, retry_after.map(Duration::from_secs), jitter);
        prop_assert!(delay <= Duration::from_secs(u64::from(max_delay)));
        prop_assert!(base_delay(attempt, &policy) <= Duration::from_secs(u64::from(max_delay)));
    }
}
