//! The retry schedule: pure functions, with the clock and the randomness passed in.
//!
//! Delay before attempt n+1 = min(initialDelay × backoffFactor^(n-1), maxDelay), with ±20%
//! jitter; a receiver's `Retry-After` (429 and 503 only) may lengthen it, up to maxDelay.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::RetryPolicy;

/// Largest share of the base delay that jitter adds or removes.
const JITTER_SHARE: f64 = 0.2;
/// Shortest jittered delay, in seconds (unless the policy's maxDelay is shorter).
const MIN_DELAY_SECS: f64 = 1.0;

/// Un-jittered delay after failed attempt `attempt` (1-based, within the current series).
///
/// `min(initial_delay × backoff_factor^(attempt-1), max_delay)`; attempt 0 counts as 1, and
/// huge attempt numbers or factors saturate at `max_delay` instead of overflowing.
pub fn base_delay(attempt: u32, policy: &RetryPolicy) -> Duration {
    secs(base_delay_secs(attempt, policy))
}

/// Delay before the next attempt after failed attempt `attempt` (1-based, within the series).
///
/// `jitter` ∈ [-1, 1] (values outside are clamped, NaN counts as 0) scales the base delay by
/// ±20%; the jittered delay is clamped to [1 s, max_delay]. `retry_after`, which the caller
/// passes only for 429 and 503, may lengthen the delay: the result is `retry_after` clamped
/// into [jittered delay, max_delay]. The result never exceeds max_delay.
pub fn next_delay(
    attempt: u32,
    policy: &RetryPolicy,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let max = f64::from(policy.max_delay);
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(-1.0, 1.0)
    };
    let jittered = (base_delay_secs(attempt, policy) * (1.0 + JITTER_SHARE * jitter))
        .max(MIN_DELAY_SECS)
        .min(max);
    let delay = match retry_after {
        Some(retry_after) => retry_after.as_secs_f64().max(jittered).min(max),
        None => jittered,
    };
    secs(delay)
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (a past date means zero).
///
/// Returns `None` for anything else; a delta too large for a `u64` saturates.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at: DateTime<Utc> = httpdate::parse_http_date(value).ok()?.into();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// [`base_delay`] in seconds, always finite and within [0, max_delay].
fn base_delay_secs(attempt: u32, policy: &RetryPolicy) -> f64 {
    let max = f64::from(policy.max_delay);
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let delay = f64::from(policy.initial_delay) * policy.backoff_factor.powi(exponent);
    if delay.is_nan() {
        max
    } else {
        delay.clamp(0.0, max)
    }
}

/// Seconds (finite, non-negative, at most `u32::MAX`) as a duration rounded to the millisecond.
fn secs(secs: f64) -> Duration {
    Duration::from_millis((secs * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn policy(initial_delay: u32, max_delay: u32, backoff_factor: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_delay,
            max_delay,
            backoff_factor,
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap()
    }

    #[test]
    fn default_policy_waits_30_60_120_240_seconds() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (1..=4).map(|n| base_delay(n, &policy)).collect();
        assert_eq!(delays, [s(30), s(60), s(120), s(240)]);
    }

    #[test]
    fn zero_jitter_gives_the_base_delay() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (1..=4).map(|n| next_delay(n, &policy, None, 0.0)).collect();
        assert_eq!(delays, [s(30), s(60), s(120), s(240)]);
    }

    #[test]
    fn attempt_zero_counts_as_the_first() {
        assert_eq!(base_delay(0, &RetryPolicy::default()), s(30));
    }

    #[test]
    fn base_delay_is_capped_at_max_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(base_delay(8, &policy), s(3600)); // 30 × 2^7 = 3840
    }

    #[test]
    fn initial_delay_above_max_delay_is_capped() {
        assert_eq!(base_delay(1, &policy(100, 50, 2.0)), s(50));
    }

    #[test]
    fn fractional_factor_is_honoured() {
        assert_eq!(
            base_delay(3, &policy(10, 3600, 1.5)),
            Duration::from_millis(22_500)
        );
    }

    #[test]
    fn huge_attempt_number_saturates_at_max_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(base_delay(u32::MAX, &policy), s(3600));
        assert_eq!(next_delay(u32::MAX, &policy, None, 1.0), s(3600));
    }

    #[test]
    fn huge_factor_saturates_at_max_delay() {
        let policy = policy(u32::MAX, u32::MAX, f64::MAX);
        assert_eq!(base_delay(3, &policy), s(u64::from(u32::MAX)));
        assert_eq!(next_delay(3, &policy, None, 1.0), s(u64::from(u32::MAX)));
    }

    #[test]
    fn non_finite_factor_saturates_at_max_delay() {
        assert_eq!(base_delay(2, &policy(30, 3600, f64::INFINITY)), s(3600));
        assert_eq!(base_delay(2, &policy(30, 3600, f64::NAN)), s(3600));
    }

    #[test]
    fn full_negative_jitter_removes_20_percent() {
        assert_eq!(next_delay(2, &RetryPolicy::default(), None, -1.0), s(48));
    }

    #[test]
    fn full_positive_jitter_adds_20_percent() {
        assert_eq!(next_delay(2, &RetryPolicy::default(), None, 1.0), s(72));
    }

    #[test]
    fn jitter_stays_within_20_percent_of_the_base() {
        let policy = RetryPolicy::default();
        for attempt in 1..=7 {
            let base = base_delay(attempt, &policy).as_secs_f64();
            for step in -10..=10 {
                let delay = next_delay(attempt, &policy, None, f64::from(step) / 10.0);
                let delay = delay.as_secs_f64();
                assert!(
                    delay >= base * 0.8 - 1e-3,
                    "attempt {attempt}: {delay} < {base}"
                );
                assert!(delay <= (base * 1.2).min(3600.0) + 1e-3);
            }
        }
    }

    #[test]
    fn jitter_outside_the_unit_range_is_clamped() {
        let policy = RetryPolicy::default();
        assert_eq!(next_delay(1, &policy, None, 7.0), s(36));
        assert_eq!(next_delay(1, &policy, None, -7.0), s(24));
    }

    #[test]
    fn nan_jitter_counts_as_none() {
        assert_eq!(
            next_delay(1, &RetryPolicy::default(), None, f64::NAN),
            s(30)
        );
    }

    #[test]
    fn jitter_never_exceeds_max_delay() {
        assert_eq!(next_delay(20, &RetryPolicy::default(), None, 1.0), s(3600));
    }

    #[test]
    fn jittered_delay_is_at_least_one_second() {
        assert_eq!(next_delay(1, &policy(0, 3600, 2.0), None, -1.0), s(1));
        assert_eq!(next_delay(40, &policy(1, 3600, 0.5), None, -1.0), s(1));
    }

    #[test]
    fn retry_after_longer_than_the_delay_is_honoured() {
        let delay = next_delay(1, &RetryPolicy::default(), Some(s(600)), 0.0);
        assert_eq!(delay, s(600));
    }

    #[test]
    fn retry_after_shorter_than_the_delay_does_not_shorten_it() {
        let delay = next_delay(2, &RetryPolicy::default(), Some(s(5)), 0.0);
        assert_eq!(delay, s(60));
    }

    #[test]
    fn retry_after_beyond_max_delay_is_capped() {
        let delay = next_delay(1, &RetryPolicy::default(), Some(s(86_400)), 0.0);
        assert_eq!(delay, s(3600));
    }

    #[test]
    fn saturated_retry_after_is_capped_at_max_delay() {
        let delay = next_delay(1, &RetryPolicy::default(), Some(Duration::MAX), 0.0);
        assert_eq!(delay, s(3600));
    }

    #[test]
    fn retry_after_delta_seconds_are_parsed() {
        assert_eq!(parse_retry_after("120", now()), Some(s(120)));
    }

    #[test]
    fn retry_after_surrounding_whitespace_is_ignored() {
        assert_eq!(parse_retry_after(" 7 ", now()), Some(s(7)));
    }

    #[test]
    fn retry_after_huge_delta_saturates() {
        let parsed = parse_retry_after("99999999999999999999999", now());
        assert_eq!(parsed, Some(s(u64::MAX)));
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now() {
        let parsed = parse_retry_after("Wed, 21 Oct 2015 07:30:30 GMT", now());
        assert_eq!(parsed, Some(s(150)));
    }

    #[test]
    fn retry_after_obsolete_http_date_forms_are_parsed() {
        let rfc850 = parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now());
        let asctime = parse_retry_after("Wed Oct 21 07:29:00 2015", now());
        assert_eq!(rfc850, Some(s(60)));
        assert_eq!(asctime, Some(s(60)));
    }

    #[test]
    fn retry_after_date_in_the_past_means_no_wait() {
        let parsed = parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now());
        assert_eq!(parsed, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_garbage_is_none() {
        for value in [
            "",
            "  ",
            "soon",
            "-5",
            "1.5",
            "12s",
            "0x10",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(value, now()), None, "{value:?}");
        }
    }
}
