//! The ingest bound adapts to how fast the group commit answers: additive increase,
//! multiplicative decrease on a latency target, as TCP adapts its window to a path.
//!
//! A fixed `MAX_INGEST_IN_FLIGHT` cannot know how much of the machine is free. When the cores
//! are saturated (the workers delivering, PostgreSQL, other tenants), every admitted request
//! queues behind the others and all of them get slow; a smaller bound would answer the excess
//! `503` at once and keep the admitted ones fast. So the bound moves between a floor and
//! `MAX_INGEST_IN_FLIGHT`:
//! - the requests are judged a window at a time (as many as the bound, at least [`FLOOR`]);
//! - a window in which more than a tenth were answered slower than the target, after another
//!   such window, lowers the bound by a fifth (a lone slow answer, or one slow group commit, is
//!   noise, not saturation: the requests of one commit are slow together);
//! - any other window raises it by one, back up to the maximum, whether or not the bound was
//!   in use: under light load a stall (a WAL flush, a checkpoint) could lower it, and a rule that
//!   raised it only when half of it was taken left it low for as long as the load stayed light,
//!   refusing the next burst at a fraction of the api's capacity (`bench/PROFILE.md`). The
//!   maximum is a small fixed number, so a bound back at it after a quiet spell risks no more
//!   than `MAX_INGEST_IN_FLIGHT` does.
//!
//! Without saturation the bound stays at its maximum: nothing changes for a healthy api.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Gauge: the current ingest bound.
pub const INGEST_LIMIT: &str = "wirehook_ingest_in_flight_limit";

/// The lowest the bound goes (or `MAX_INGEST_IN_FLIGHT` when that is lower): a few concurrent
/// senders are always served.
pub const FLOOR: usize = 8;
/// The share of the bound kept on a decrease.
const DECREASE: f64 = 0.8;

/// The bound's state, shared by every connection.
#[derive(Debug)]
pub struct IngestLimit {
    max: usize,
    min: usize,
    /// `None`: the bound stays at `max`.
    target: Option<Duration>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    /// Requests answered in the current window, and how many of them slower than the target.
    answered: usize,
    slow: usize,
    /// The previous window was slow.
    was_slow: bool,
}

/// An admitted request's hold on the bound; dropping it (when the response has been produced)
/// releases the slot and feeds its latency to the bound.
#[derive(Debug)]
pub struct Slot {
    /// `None` once released.
    bound: Option<Arc<IngestLimit>>,
    admitted_at: Instant,
}

impl IngestLimit {
    /// A bound of at most `max` in flight, adapting to `target` (`None`: fixed at `max`).
    pub fn new(max: usize, target: Option<Duration>) -> Arc<Self> {
        let max = max.max(1);
        metrics::gauge!(INGEST_LIMIT).set(max as f64);
        Arc::new(Self {
            max,
            min: FLOOR.min(max),
            target,
            state: Mutex::new(State {
                limit: max as f64,
                in_flight: 0,
                answered: 0,
                slow: 0,
                was_slow: false,
            }),
        })
    }

    /// A slot, or `None` when the current bound is reached.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut state = self.lock();
        let limit = state.limit.floor() as usize;
        if state.in_flight >= limit {
            return None;
        }
        state.in_flight += 1;
        Some(Slot {
            bound: Some(self.clone()),
            admitted_at: Instant::now(),
        })
    }

    /// The current bound.
    pub fn limit(&self) -> usize {
        self.lock().limit.floor() as usize
    }

    /// Releases a slot that took `latency`.
    fn release(&self, latency: Duration) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let Some(target) = self.target else {
            return;
        };
        state.answered += 1;
        state.slow += usize::from(latency > target);
        let window = (state.limit.floor() as usize).max(FLOOR);
        if state.answered < window {
            return;
        }
        let before = state.limit;
        let slow = state.slow * 10 > state.answered;
        if slow && state.was_slow {
            state.limit = (state.limit * DECREASE).max(self.min as f64);
        } else if !slow {
            state.limit = (state.limit + 1.0).min(self.max as f64);
        }
        // Two slow windows make one decrease; the next needs two more.
        state.was_slow = slow && !state.was_slow;
        (state.answered, state.slow) = (0, 0);
        if state.limit.floor() != before.floor() {
            metrics::gauge!(INGEST_LIMIT).set(state.limit.floor());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot {
    /// Releases the slot as if its request took `latency`.
    #[cfg(test)]
    fn finish(mut self, latency: Duration) {
        if let Some(bound) = self.bound.take() {
            bound.release(latency);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(bound) = self.bound.take() {
            bound.release(self.admitted_at.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(50);
    const SLOW: Duration = Duration::from_millis(200);
    const FAST: Duration = Duration::from_millis(5);

    /// Fills the bound, then releases every slot as if it took `latency`.
    fn round_of(bound: &Arc<IngestLimit>, latency: Duration) {
        let slots: Vec<Slot> = std::iter::from_fn(|| bound.try_acquire()).collect();
        for slot in slots {
            slot.finish(latency);
        }
    }

    #[test]
    fn the_bound_refuses_past_its_limit() {
        let bound = IngestLimit::new(32, Some(TARGET));
        let slots: Vec<Slot> = std::iter::from_fn(|| bound.try_acquire()).collect();
        assert_eq!(slots.len(), 32);
        drop(slots);
        assert!(bound.try_acquire().is_some());
    }

    #[test]
    fn two_slow_windows_in_a_row_lower_the_bound_once() {
        let bound = IngestLimit::new(32, Some(TARGET));
        round_of(&bound, SLOW);
        // One slow window (one slow group commit) is noise.
        assert_eq!(bound.limit(), 32);
        round_of(&bound, SLOW);
        // 64 slow answers in two windows: one decrease, not 64.
        assert_eq!(bound.limit(), 25);
    }

    #[test]
    fn a_slow_window_between_fast_ones_does_not_lower_the_bound() {
        let bound = IngestLimit::new(32, Some(TARGET));
        for _ in 0..10 {
            round_of(&bound, SLOW);
            round_of(&bound, FAST);
        }
        assert_eq!(bound.limit(), 32);
    }

    #[test]
    fn a_few_slow_answers_in_a_window_do_not_lower_the_bound() {
        let bound = IngestLimit::new(32, Some(TARGET));
        let slots: Vec<Slot> = std::iter::from_fn(|| bound.try_acquire()).collect();
        for (i, slot) in slots.into_iter().enumerate() {
            slot.finish(if i < 3 { SLOW } else { FAST });
        }
        assert_eq!(bound.limit(), 32);
    }

    #[test]
    fn the_bound_never_falls_below_the_floor() {
        let bound = IngestLimit::new(32, Some(TARGET));
        for _ in 0..50 {
            round_of(&bound, SLOW);
        }
        assert_eq!(bound.limit(), FLOOR);
    }

    #[test]
    fn fast_answers_at_the_limit_raise_the_bound_back_to_its_maximum() {
        let bound = IngestLimit::new(32, Some(TARGET));
        for _ in 0..50 {
            round_of(&bound, SLOW);
        }
        for _ in 0..100 {
            round_of(&bound, FAST);
        }
        assert_eq!(bound.limit(), 32);
    }

    #[test]
    fn fast_answers_under_light_load_raise_the_bound_back_too() {
        let bound = IngestLimit::new(32, Some(TARGET));
        round_of(&bound, SLOW);
        round_of(&bound, SLOW);
        assert_eq!(bound.limit(), 25);
        // One request at a time, far from the bound: a stall must not leave it lowered.
        for _ in 0..1_000 {
            bound.try_acquire().expect("a slot").finish(FAST);
        }
        assert_eq!(bound.limit(), 32);
    }

    #[test]
    fn without_a_target_the_bound_stays_at_its_maximum() {
        let bound = IngestLimit::new(32, None);
        round_of(&bound, SLOW);
        assert_eq!(bound.limit(), 32);
    }

    #[test]
    fn a_maximum_below_the_floor_is_the_floor() {
        let bound = IngestLimit::new(2, Some(TARGET));
        round_of(&bound, SLOW);
        assert_eq!(bound.limit(), 2);
    }
}
