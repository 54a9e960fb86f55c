//! Whether a resource keeps growing: a least-squares line through the second half of the run.
//!
//! **The rule.** For each gated resource, fit `value = a + b·t` by least squares to the samples
//! of the second half of the run (from half the run's length on; the first half is the ramp:
//! tables fill up to the retention window, caches warm). Its projected growth is `b` times the
//! length of that half. The resource **keeps growing** when the projected growth exceeds 10% of
//! its mean over that half plus an absolute floor of its own ([`Floor`]), which keeps small,
//! noisy values (a lag of 0.3 s, a table of a few pages) from failing on noise. A rise must
//! also go on to the end: a line fitted to the **last quarter** alone, projected over the
//! half's length, must exceed the same limit. A step that levels off before the last quarter
//! (an allocator taking one more arena, a table reaching its retention window late) is a step,
//! not a leak; a leak rises in both fits. Fewer than three samples in the half (or in its last
//! quarter) prove nothing and fail the check.

/// Share of the mean a resource may grow by over the second half.
pub const RELATIVE_LIMIT: f64 = 0.10;

/// The absolute allowance of one resource, in its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor(pub f64);

/// The fitted trend of one resource over the second half of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Samples in the half.
    pub samples: usize,
    /// Slope, unit per second.
    pub slope: f64,
    /// Slope × the half's length.
    pub growth: f64,
    /// Samples in the last quarter.
    pub recent_samples: usize,
    /// The last quarter's own slope × the half's length: whether the rise goes on to the end.
    pub recent_growth: f64,
    /// Mean over the half.
    pub mean: f64,
    /// The growth allowed: `RELATIVE_LIMIT × |mean| + floor`.
    pub limit: f64,
}

impl Trend {
    /// Whether the resource keeps growing (or too few samples were taken to tell).
    pub fn growing(&self) -> bool {
        self.samples < 3
            || self.recent_samples < 3
            || (self.growth > self.limit && self.recent_growth > self.limit)
    }
}

/// Least-squares slope of `points` (`(t, value)`); `None` with fewer than two distinct `t`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, v) in points {
        num += (t - mean_t) * (v - mean_v);
        den += (t - mean_t) * (t - mean_t);
    }
    (den > 0.0).then(|| num / den)
}

/// The samples of the second half of `points` (by time): from the midpoint of the first and
/// last `t` on.
pub fn second_half(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    tail(points, 0.5)
}

/// The samples of the last quarter of `points` (by time).
pub fn last_quarter(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    tail(points, 0.75)
}

/// The samples from `share` of the way between the first and last `t` on.
fn tail(points: &[(f64, f64)], share: f64) -> Vec<(f64, f64)> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let from = first.0 + (last.0 - first.0) * share;
    points.iter().copied().filter(|p| p.0 >= from).collect()
}

/// The trend of `points` over their second half, judged with `floor`.
pub fn trend(points: &[(f64, f64)], floor: Floor) -> Trend {
    let half = second_half(points);
    let n = half.len();
    let mean = if n == 0 {
        0.0
    } else {
        half.iter().map(|p| p.1).sum::<f64>() / n as f64
    };
    let span = match (half.first(), half.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    let slope = slope(&half).unwrap_or(0.0);
    let recent = last_quarter(points);
    Trend {
        samples: n,
        slope,
        growth: slope * span,
        recent_samples: recent.len(),
        recent_growth: self::slope(&recent).unwrap_or(0.0) * span,
        mean,
        limit: RELATIVE_LIMIT * mean.abs() + floor.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noise in -1..1 (xorshift), so the tests need no random crate.
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as f64 / 1000.0 - 1.0
            })
            .collect()
    }

    fn every_30s(values: impl IntoIterator<Item = f64>) -> Vec<(f64, f64)> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i as f64 * 30.0, v))
            .collect()
    }

    #[test]
    fn the_slope_of_a_line_is_its_slope() {
        let points = every_30s((0..10).map(|i| 5.0 + 2.0 * i as f64));
        let b = slope(&points).unwrap_or(f64::NAN);
        assert!((b - 2.0 / 30.0).abs() < 1e-12, "{b}");
    }

    #[test]
    fn a_steadily_growing_series_fails() {
        // 60 samples over 30 minutes, RSS growing 0.5 MiB a sample from 40 MiB: +15 MiB over
        // the second half against a limit of ~6.1 + 2.
        let points = every_30s((0..61).map(|i| 40.0 + 0.5 * i as f64));
        let t = trend(&points, Floor(2.0));
        assert!(t.growing(), "{t:?}");
    }

    #[test]
    fn a_slow_leak_hidden_in_noise_fails() {
        let values = noise(61, 7)
            .into_iter()
            .enumerate()
            .map(|(i, n)| 100.0 + 0.6 * i as f64 + 3.0 * n);
        let t = trend(&every_30s(values), Floor(2.0));
        assert!(t.growing(), "{t:?}");
    }

    #[test]
    fn a_flat_noisy_series_passes() {
        let values = noise(61, 11).into_iter().map(|n| 40.0 + 4.0 * n);
        let t = trend(&every_30s(values), Floor(2.0));
        assert!(!t.growing(), "{t:?}");
    }

    #[test]
    fn a_ramp_that_levels_off_in_the_first_half_passes() {
        // A table filling up to its retention window during the first ten minutes.
        let values = noise(61, 3)
            .into_iter()
            .enumerate()
            .map(|(i, n)| 50_000.0 * (i.min(20) as f64 / 20.0) + 500.0 * n);
        let t = trend(&every_30s(values), Floor(1000.0));
        assert!(!t.growing(), "{t:?}");
    }

    #[test]
    fn a_sawtooth_from_periodic_purges_passes() {
        // Rows pile up for a minute, then a purge takes them back: flat on average.
        let values = (0..61).map(|i| 40_000.0 + 10_000.0 * (i % 2) as f64);
        let t = trend(&every_30s(values), Floor(1000.0));
        assert!(!t.growing(), "{t:?}");
    }

    #[test]
    fn a_step_that_levels_off_before_the_last_quarter_passes() {
        // A worker's RSS steps from 34 to 44 MiB at minute 22 of 30 and stays there: the
        // half's line rises by more than the limit, the last quarter's does not.
        let values = noise(61, 5)
            .into_iter()
            .enumerate()
            .map(|(i, n)| if i < 44 { 34.0 } else { 44.0 } + 0.3 * n);
        let t = trend(&every_30s(values), Floor(8.0));
        assert!(t.growth > t.limit, "{t:?}");
        assert!(!t.growing(), "{t:?}");
    }

    #[test]
    fn a_step_in_the_last_quarter_fails() {
        // Nothing after it shows whether it levels off.
        let values = (0..61).map(|i| if i < 54 { 34.0 } else { 54.0 });
        let t = trend(&every_30s(values), Floor(8.0));
        assert!(t.growing(), "{t:?}");
    }

    #[test]
    fn a_leak_that_goes_on_rising_fails_in_both_fits() {
        let values = noise(61, 13)
            .into_iter()
            .enumerate()
            .map(|(i, n)| 34.0 + 0.6 * i as f64 + 1.0 * n);
        let t = trend(&every_30s(values), Floor(8.0));
        assert!(t.recent_growth > t.limit, "{t:?}");
        assert!(t.growing(), "{t:?}");
    }

    #[test]
    fn too_few_samples_prove_nothing() {
        let t = trend(&every_30s([1.0, 1.0, 1.0]), Floor(1.0));
        assert_eq!(t.samples, 2);
        assert!(t.growing());
    }
}
