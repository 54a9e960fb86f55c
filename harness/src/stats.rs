//! Percentiles and rates of measured samples.

use std::time::Duration;

/// Summary of a set of durations (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// How many samples.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Percentiles {
    /// Summarises `samples` (any order); all zero when empty.
    pub fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Self {
            n: sorted.len(),
            p50: nearest_rank(&sorted, 50.0),
            p95: nearest_rank(&sorted, 95.0),
            p99: nearest_rank(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// The `pct`th percentile of sorted `samples` by the nearest-rank method (zero when empty).
pub fn nearest_rank(sorted: &[Duration], pct: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Events per second: `count` over `elapsed` (zero for an empty interval).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Milliseconds, as a float for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn nearest_rank_of_one_to_hundred_is_the_percentile_itself() {
        let samples = millis(&(1..=100).rev().collect::<Vec<_>>());
        let p = Percentiles::of(&samples);
        assert_eq!(p.n, 100);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p95, Duration::from_millis(95));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let p = Percentiles::of(&millis(&[7]));
        assert_eq!(
            (p.p50, p.p99, p.max),
            (millis(&[7])[0], millis(&[7])[0], millis(&[7])[0])
        );
    }

    #[test]
    fn no_samples_summarise_to_zero() {
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(rate(10, Duration::ZERO), 0.0);
    }
}
