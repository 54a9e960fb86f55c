//! The ingest bound tells overload from a busy machine, so that it refuses only overload.
//!
//! `MAX_INGEST_IN_FLIGHT` bounds what the api holds (memory, the group commit). Under it,
//! requests are admitted however slow the answers are. By Little's law the in-flight count is
//! the arrival rate times the answer time: a machine busy near its capacity (the workers
//! delivering, PostgreSQL, other tenants) answers 2,000 requests a second in 15 ms and holds 30,
//! and a cold start or a stall (a WAL flush, a checkpoint) holds more for a moment. Refusing
//! them loses requests the api was about to serve: a bound of 32 refused a tenth of a load far
//! below capacity (`bench/PROFILE.md`).
//!
//! Overload is when the bound binds: more arrives than is answered, the in-flight count sits at
//! the bound and every admitted request waits behind the others, so the larger the bound, the
//! slower each answer. So the answers are judged [`INTERVAL`] at a time, by the fastest of each,
//! as CoDel judges a router's queue: an interval in which the in-flight count reached the bound
//! and even the fastest answer took longer than the target (`INGEST_LATENCY_TARGET_MS`) has a
//! standing queue (a stall's backlog commits at once and leaves the next answers fast). Two such
//! intervals in a row cut the bound to the answers per second times the fastest answer's time:
//! the in-flight count at which every answer would have been that fast, a cut by the ratio of
//! the fastest answer to the average one. The cuts go on while the queue stands, so the bound
//! settles where the fastest answers take about the target, and a moment in which every answer
//! is slow costs one mild cut, not a fall to the floor. Any other interval raises the bound by
//! an eighth, back up to the maximum, whether or not it was in use (under light load a lowered
//! bound must still come back). An interval lasts until it holds [`FLOOR`] answers too, so that
//! one slow answer alone never judges it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Gauge: the current ingest bound.
pub const INGEST_LIMIT: &str = "wirehook_ingest_in_flight_limit";

/// The lowest the bound goes (or `MAX_INGEST_IN_FLIGHT` when that is lower): a few concurrent
/// senders are always served. Also the fewest answers an interval is judged on.
pub const FLOOR: usize = 8;
/// How long the answers judged together span: longer than a stall's backlog takes to commit.
pub const INTERVAL: Duration = Duration::from_millis(100);

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
    limit: usize,
    in_flight: usize,
    /// When the current interval began, how many answers it has seen and its fastest.
    since: Instant,
    answered: usize,
    fastest: Duration,
    /// The in-flight count reached the bound in the current interval.
    binding: bool,
    /// The previous judged interval had a standing queue.
    was_queued: bool,
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
        Self::starting_at(max, target, Instant::now())
    }

    /// [`Self::new`] with its first interval beginning at `since`.
    fn starting_at(max: usize, target: Option<Duration>, since: Instant) -> Arc<Self> {
        let max = max.max(1);
        metrics::gauge!(INGEST_LIMIT).set(max as f64);
        Arc::new(Self {
            max,
            min: FLOOR.min(max),
            target,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                since,
                answered: 0,
                fastest: Duration::MAX,
                binding: false,
                was_queued: false,
            }),
        })
    }

    /// A slot, or `None` when the current bound is reached.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut state = self.lock();
        if state.in_flight >= state.limit {
            state.binding = true;
            return None;
        }
        state.in_flight += 1;
        state.binding |= state.in_flight >= state.limit;
        Some(Slot {
            bound: Some(self.clone()),
            admitted_at: Instant::now(),
        })
    }

    /// The current bound.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Releases a slot that took `latency`, answered at `now`.
    fn release(&self, latency: Duration, now: Instant) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let Some(target) = self.target else {
            return;
        };
        state.answered += 1;
        state.fastest = state.fastest.min(latency);
        let span = now.saturating_duration_since(state.since);
        if span < INTERVAL || state.answered < FLOOR {
            return;
        }
        let before = state.limit;
        let queued = state.binding && state.fastest > target;
        if queued && state.was_queued {
            // Answers per second times the fastest answer's time: by Little's law, the in-flight
            // count at which every answer would have been as fast as the fastest. A lower bound
            // would refuse what the api is answering that fast.
            let fits = state.answered as u128 * state.fastest.as_nanos() / span.as_nanos().max(1);
            state.limit = usize::try_from(fits)
                .unwrap_or(usize::MAX)
                .clamp(self.min, state.limit);
        } else if !queued {
            state.limit = (state.limit + (state.limit / 8).max(1)).min(self.max);
        }
        state.was_queued = queued;
        if state.limit != before {
            metrics::gauge!(INGEST_LIMIT).set(state.limit as f64);
            tracing::debug!(
                limit = state.limit,
                answers = state.answered,
                fastest_ms = state.fastest.as_secs_f64() * 1000.0,
                "ingest bound moved"
            );
        }
        (state.since, state.answered, state.fastest) = (now, 0, Duration::MAX);
        state.binding = state.in_flight >= state.limit;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot {
    /// Releases the slot as if its request took `latency` and was answered at `now`.
    #[cfg(test)]
    fn finish_at(mut self, latency: Duration, now: Instant) {
        if let Some(bound) = self.bound.take() {
            bound.release(latency, now);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(bound) = self.bound.take() {
            bound.release(self.admitted_at.elapsed(), Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(20);
    /// A standing queue's fastest answer: 256 in flight answered in 100 ms wait 100 ms on average.
    const SLOW: Duration = Duration::from_millis(60);
    const FAST: Duration = Duration::from_millis(5);

    /// A bound of at most `max` and the start of its first interval.
    fn bound(max: usize, target: Option<Duration>) -> (Arc<IngestLimit>, Instant) {
        let start = Instant::now();
        (IngestLimit::starting_at(max, target, start), start)
    }

    /// `n` requests arrive at once from `start` (the bound takes what it can and refuses the
    /// rest); the admitted ones are answered evenly over `span`, each taking `latency` but the
    /// first, which takes `first`. Returns the end of the span.
    fn answers(
        bound: &Arc<IngestLimit>,
        start: Instant,
        n: usize,
        (first, latency): (Duration, Duration),
        span: Duration,
    ) -> Instant {
        let slots: Vec<Slot> = (0..n).filter_map(|_| bound.try_acquire()).collect();
        let admitted = slots.len() as u32;
        for (i, slot) in (1..).zip(slots) {
            let took = if i == 1 { first } else { latency };
            slot.finish_at(took, start + span * i / admitted);
        }
        start + span
    }

    /// [`answers`] all taking `latency`, over one interval.
    fn interval(bound: &Arc<IngestLimit>, start: Instant, n: usize, latency: Duration) -> Instant {
        answers(bound, start, n, (latency, latency), INTERVAL)
    }

    #[test]
    fn the_bound_refuses_past_its_limit() {
        let (bound, _) = bound(32, Some(TARGET));
        let slots: Vec<Slot> = std::iter::from_fn(|| bound.try_acquire()).collect();
        assert_eq!(slots.len(), 32);
        drop(slots);
        assert!(bound.try_acquire().is_some());
    }

    #[test]
    fn a_standing_queue_at_the_bound_cuts_it_to_what_its_fastest_answer_fits() {
        let (bound, start) = bound(256, Some(TARGET));
        let next = interval(&bound, start, 300, SLOW);
        // One interval without a fast answer could be a stall's backlog.
        assert_eq!(bound.limit(), 256);
        interval(&bound, next, 300, SLOW);
        // 256 answers in 100 ms: 2,560 per second, 153 of them per 60 ms.
        assert_eq!(bound.limit(), 153);
    }

    #[test]
    fn slow_answers_under_the_bound_do_not_lower_it() {
        let (bound, start) = bound(256, Some(TARGET));
        let mut at = start;
        // A busy machine: every answer slow, but the api keeps up and the bound never binds.
        for _ in 0..20 {
            at = interval(&bound, at, 200, SLOW);
        }
        assert_eq!(bound.limit(), 256);
    }

    #[test]
    fn a_stalls_backlog_followed_by_a_fast_answer_keeps_the_bound() {
        let (bound, start) = bound(256, Some(TARGET));
        let mut at = start;
        for _ in 0..10 {
            at = interval(&bound, at, 300, SLOW);
            // The first request admitted after the stall is answered at once.
            at = answers(&bound, at, 300, (FAST, SLOW), INTERVAL);
        }
        assert_eq!(bound.limit(), 256);
    }

    #[test]
    fn the_bound_never_falls_below_the_floor() {
        let (bound, start) = bound(256, Some(TARGET));
        let mut at = start;
        // Each interval after the first answers what the bound admits in 100 ms, all slow, and
        // cuts it to six tenths: 153, 92, 55, 33, 19, 11, then 8.
        for _ in 0..10 {
            at = interval(&bound, at, 300, SLOW);
        }
        assert_eq!(bound.limit(), FLOOR);
    }

    #[test]
    fn intervals_without_a_standing_queue_raise_the_bound_back_by_an_eighth() {
        let (bound, start) = bound(256, Some(TARGET));
        let mut at = interval(&bound, start, 300, SLOW);
        at = interval(&bound, at, 300, SLOW);
        assert_eq!(bound.limit(), 153);
        at = interval(&bound, at, 300, FAST);
        assert_eq!(bound.limit(), 172);
        for _ in 0..20 {
            at = interval(&bound, at, 300, FAST);
        }
        assert_eq!(bound.limit(), 256);
    }

    #[test]
    fn fast_answers_under_light_load_raise_the_bound_back_too() {
        let (bound, start) = bound(256, Some(TARGET));
        let mut at = interval(&bound, start, 300, SLOW);
        at = interval(&bound, at, 300, SLOW);
        assert_eq!(bound.limit(), 153);
        // One request at a time, far from the bound, ten a second: a lowered bound must not
        // stay lowered for as long as the load stays light.
        for _ in 0..400 {
            at += Duration::from_millis(100);
            bound.try_acquire().expect("a slot").finish_at(FAST, at);
        }
        assert_eq!(bound.limit(), 256);
    }

    #[test]
    fn without_a_target_the_bound_stays_at_its_maximum() {
        let (bound, start) = bound(32, None);
        let at = interval(&bound, start, 64, SLOW);
        interval(&bound, at, 64, SLOW);
        assert_eq!(bound.limit(), 32);
    }

    #[test]
    fn a_maximum_below_the_floor_is_the_floor() {
        let (bound, start) = bound(2, Some(TARGET));
        let mut at = start;
        for _ in 0..10 {
            at = interval(&bound, at, 4, SLOW);
        }
        assert_eq!(bound.limit(), 2);
    }
}
