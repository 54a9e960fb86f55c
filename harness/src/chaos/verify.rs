//! The end-of-run checks of a chaos run: what the database holds against what the receivers
//! answered and what the api accepted. Pure: the run gathers the rows, the journal and the
//! fault timeline, and [`check`] decides.
//!
//! For each outbound event:
//! - it must be `delivered` or `failed` (anything else, or an accepted source event without
//!   its rows, is **lost**);
//! - `delivered`: an attempt recorded a 2xx and its receiver (the configuration's path) saw its
//!   `webhook-id` answered 2xx; `failed`: [`plan::MAX_ATTEMPTS`](super::plan::MAX_ATTEMPTS)
//!   attempts recorded, none 2xx. Otherwise it is **mismatched**;
//! - no recorded attempt may claim an answer the receiver did not give (per kind: 2xx, other
//!   status, hang, reset), else mismatched;
//! - an attempt the receiver answered but the database never recorded must be explained by a
//!   fault, else it is **unexplained**: a worker was SIGKILLed at most [`RECORD_WINDOW`] after
//!   the arrival and the arrival's connection was that worker's (it closed within
//!   [`KILL_WINDOW`] after the kill; connections are pooled, so it need not be the last request
//!   on it), or, for a reset the receiver itself caused (so the connection's owner cannot be
//!   seen), a kill came at most [`RESET_WINDOW`] after it; on a connection that ended before
//!   the kill without one (its last arrival was reset, dropped, or hung until the worker timed
//!   out and closed it), a kill came at most [`RESET_WINDOW`] after it closed; or it arrived
//!   while PostgreSQL was down or within [`OUTAGE_MARGIN`] of that;
//! - **duplicates** are the 2xx answers beyond the one a delivered event needs. They can only
//!   come from unrecorded attempts (explained above) or from a job run twice after its worker
//!   died between recording and acknowledging (two attempt rows with one number, **raced**),
//!   which is allowed only in a run that had faults.
//!
//! For the deliveries of ordered configurations (`ordering` on `/callId`), the first arrival of
//! each event answered 200 must come in sequence order within its key, across worker SIGKILLs
//! and the PostgreSQL crash (a head that failed for good under `detach` leaves a gap, never an
//! inversion); an inversion is **out of order**.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use wirehook_testkit::receiver::{Journal, Reply};

/// How soon after a SIGKILL the receiver must see the killed worker's connection close (a
/// hanging answer only notices when it is written, [`plan::HANG`](super::plan::HANG) later).
pub const KILL_WINDOW: Duration = Duration::from_secs(4);
/// How long after an answer a SIGKILL can still have kept it from being recorded (recording
/// takes milliseconds; the rest is room for a loaded CI machine).
pub const RECORD_WINDOW: Duration = Duration::from_secs(5);
/// The same for a reset, whose connection's owner is unknown: tighter, so that kills every
/// few seconds do not explain every reset.
pub const RESET_WINDOW: Duration = Duration::from_secs(2);
/// How far around a PostgreSQL outage an arrival may be and still have lost its record.
pub const OUTAGE_MARGIN: Duration = Duration::from_secs(3);

/// An outbound event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRow {
    pub id: i64,
    /// Its `webhook-id`.
    pub message_id: String,
    pub config_id: Option<i64>,
    pub parent_event_id: Option<i64>,
    pub status: String,
    /// Attempts counted on the event (recorded, not superseded).
    pub attempts: i32,
    /// Ordered deliveries: the key and the sequence in it.
    pub ordering: Option<(String, i64)>,
}

/// A recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub event_id: i64,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error_kind: Option<String>,
}

/// An inbound event (provider webhook or platform event) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRow {
    pub id: i64,
    /// The SignalWire `call_id` or the platform idempotency key.
    pub key: Option<String>,
}

/// What the run expects.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Keys of the source events the api answered 2xx.
    pub accepted: Vec<String>,
    /// Outbound events per source event.
    pub fan_out: usize,
    /// Attempts of a failed delivery.
    pub max_attempts: i32,
    /// Receiver path of each configuration id.
    pub paths: HashMap<i64, String>,
}

/// When the run injected faults.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// When the run started (problems are reported in seconds from here).
    pub origin: Option<Instant>,
    /// Each worker SIGKILL.
    pub kills: Vec<Instant>,
    /// Each PostgreSQL outage: stopped at, accepting connections again at.
    pub outages: Vec<(Instant, Instant)>,
}

/// The verdict of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Outbound events the accepted source events must have produced.
    pub events: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Outbound events missing or not in a final state.
    pub lost: usize,
    /// 2xx answers beyond the one a delivered event needs.
    pub duplicates: usize,
    /// Accepted source events not in the database (their outbound events count as lost).
    pub lost_inbound: usize,
    /// Events whose state contradicts what the receiver answered.
    pub mismatched: usize,
    /// Attempts the receiver answered, the database never recorded, and no fault explains.
    pub unexplained: usize,
    /// Attempts the receiver answered that the database never recorded (all explained or not).
    pub unrecorded: usize,
    /// Attempt rows beyond one per attempt number (a job that ran twice).
    pub raced: usize,
    /// Ordered deliveries whose first successful arrival was checked against their key's order.
    pub ordered: usize,
    /// Ordered deliveries whose first successful arrival came after a later one of their key.
    pub out_of_order: usize,
    /// The first few problems, for the log.
    pub examples: Vec<String>,
}

impl Report {
    /// Whether the run kept every promise.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.mismatched == 0 && self.unexplained == 0 && self.out_of_order == 0
    }

    /// `chaos: N events, D delivered, F failed, L lost, X duplicates`.
    pub fn line(&self) -> String {
        format!(
            "chaos: {} events, {} delivered, {} failed, {} lost, {} duplicates",
            self.events, self.delivered, self.failed, self.lost, self.duplicates
        )
    }

    /// The other counts.
    pub fn details(&self) -> String {
        format!(
            "chaos: {} lost inbound, {} mismatched, {} unrecorded attempts ({} unexplained), {} raced, {} of {} ordered deliveries out of order",
            self.lost_inbound,
            self.mismatched,
            self.unrecorded,
            self.unexplained,
            self.raced,
            self.out_of_order,
            self.ordered
        )
    }

    fn note(&mut self, problem: String) {
        if self.examples.len() < 20 {
            self.examples.push(problem);
        }
    }
}

/// What a receiver answer or a recorded attempt amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Ok,
    Status,
    Hang,
    Reset,
}

fn reply_kind(reply: &Reply) -> Kind {
    match reply {
        Reply::Status(code) | Reply::RetryAfter(code, _) if (200..300).contains(code) => Kind::Ok,
        Reply::Status(_) | Reply::RetryAfter(..) | Reply::Redirect(_) => Kind::Status,
        Reply::Hang(_) => Kind::Hang,
        Reply::Drop | Reply::Reset => Kind::Reset,
    }
}

fn attempt_kind(row: &AttemptRow) -> Kind {
    match (row.status_code, row.error_kind.as_deref()) {
        (Some(code), _) if (200..300).contains(&code) => Kind::Ok,
        (Some(_), _) => Kind::Status,
        (None, Some("timeout")) => Kind::Hang,
        (None, _) => Kind::Reset,
    }
}

/// Checks the stored rows against the receivers' journal, the accepted source events and the
/// fault timeline.
pub fn check(
    expected: &Expected,
    inbound: &[InboundRow],
    outbound: &[OutboundRow],
    attempts: &[AttemptRow],
    journal: &Journal,
    faults: &Faults,
) -> Report {
    let mut report = Report {
        events: expected.accepted.len() * expected.fan_out,
        ..Report::default()
    };

    // Accepted source events and their fan-out.
    let mut children: HashMap<i64, usize> = HashMap::new();
    for e in outbound {
        if let Some(parent) = e.parent_event_id {
            *children.entry(parent).or_default() += 1;
        }
    }
    let by_key: HashMap<&str, &InboundRow> = inbound
        .iter()
        .filter_map(|row| row.key.as_deref().map(|k| (k, row)))
        .collect();
    let mut found_outbound = 0usize;
    for key in &expected.accepted {
        match by_key.get(key.as_str()) {
            None => {
                report.lost_inbound += 1;
                report.note(format!(
                    "accepted source event {key} is not in the database"
                ));
            }
            Some(row) => {
                let n = children.get(&row.id).copied().unwrap_or(0);
                found_outbound += n.min(expected.fan_out);
                if n != expected.fan_out {
                    report.mismatched += 1;
                    report.note(format!(
                        "source event {key} fanned out to {n}, not {}",
                        expected.fan_out
                    ));
                }
            }
        }
    }
    report.lost += report.events.saturating_sub(found_outbound);

    // Receiver arrivals by webhook-id, and the last arrival of every connection.
    let mut arrivals: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut last_on_connection: HashMap<u64, usize> = HashMap::new();
    for (i, a) in journal.arrivals.iter().enumerate() {
        last_on_connection.insert(a.connection, i);
        match a.webhook_id.as_deref() {
            Some(id) => arrivals.entry(id).or_default().push(i),
            None => {
                report.mismatched += 1;
                report.note(format!("a delivery to {} came without webhook-id", a.path));
            }
        }
    }
    // A connection whose last arrival was reset, dropped or left hanging was closed by that
    // arrival (by the receiver, or by its sender's timeout), not necessarily by a kill.
    let ended_unowned = |connection: u64| -> bool {
        last_on_connection.get(&connection).is_some_and(|&i| {
            matches!(
                journal.arrivals[i].reply,
                Reply::Reset | Reply::Drop | Reply::Hang(_)
            )
        })
    };
    let explained = |i: usize| -> bool {
        let a = &journal.arrivals[i];
        let closed = journal.closed.get(&a.connection).copied();
        let reset_here = matches!(a.reply, Reply::Reset | Reply::Drop);
        let by_kill = faults.kills.iter().any(|&k| {
            // The body may be read just after the sender died.
            let before = a.at <= k + Duration::from_millis(500);
            if reset_here {
                before && a.at + RESET_WINDOW >= k
            } else {
                let killed_its_connection = closed.is_some_and(|c| k <= c && c <= k + KILL_WINDOW);
                // A connection that ended before the kill, on a reset or drop by the receiver or
                // on the worker's own timeout, cannot show whose it was: timing only. Its
                // answers may still be waiting to be recorded (a hang's outcome is known only
                // at the timeout), so a kill right after the close can lose them.
                let killed_after_it_ended = ended_unowned(a.connection)
                    && closed.is_some_and(|c| c <= k && k <= c + RESET_WINDOW);
                before
                    && a.at + RECORD_WINDOW >= k
                    && (killed_its_connection || killed_after_it_ended)
            }
        });
        let by_outage = faults
            .outages
            .iter()
            .any(|&(down, up)| a.at + OUTAGE_MARGIN >= down && a.at <= up + OUTAGE_MARGIN);
        by_kill || by_outage
    };

    let mut rows: HashMap<i64, Vec<&AttemptRow>> = HashMap::new();
    for row in attempts {
        rows.entry(row.event_id).or_default().push(row);
    }
    let known: HashSet<&str> = outbound.iter().map(|e| e.message_id.as_str()).collect();
    for id in arrivals.keys() {
        if !known.contains(id) {
            report.mismatched += 1;
            report.note(format!("received {id}, which the database does not know"));
        }
    }

    let had_faults = !faults.kills.is_empty() || !faults.outages.is_empty();
    for e in outbound {
        let seen: &[usize] = arrivals
            .get(e.message_id.as_str())
            .map_or(&[], Vec::as_slice);
        let recorded: &[&AttemptRow] = rows.get(&e.id).map_or(&[], Vec::as_slice);
        let count =
            |kinds: &mut dyn Iterator<Item = Kind>, k: Kind| kinds.filter(|x| *x == k).count();
        let seen_kinds = || seen.iter().map(|&i| reply_kind(&journal.arrivals[i].reply));
        let recorded_kinds = || recorded.iter().map(|r| attempt_kind(r));

        let path = e.config_id.and_then(|c| expected.paths.get(&c));
        if let Some(&i) = seen
            .iter()
            .find(|&&i| Some(&journal.arrivals[i].path) != path)
        {
            report.mismatched += 1;
            report.note(format!(
                "{} was delivered to {} instead of {path:?}",
                e.message_id, journal.arrivals[i].path
            ));
        }
        for k in [Kind::Ok, Kind::Status, Kind::Hang, Kind::Reset] {
            let (answered, claimed) =
                (count(&mut seen_kinds(), k), count(&mut recorded_kinds(), k));
            if claimed > answered {
                report.mismatched += 1;
                report.note(format!(
                    "event {} records {claimed} {k:?} attempts, its receiver answered {answered}",
                    e.id
                ));
            }
        }

        let numbers: HashSet<i32> = recorded.iter().map(|r| r.attempt).collect();
        let raced = recorded.len() - numbers.len();
        report.raced += raced;
        if raced > 0 && !had_faults {
            report.unexplained += raced;
            report.note(format!(
                "event {} ran an attempt twice in a run without faults",
                e.id
            ));
        }
        let unrecorded = seen.len().saturating_sub(recorded.len());
        report.unrecorded += unrecorded;
        let explainable = seen.iter().filter(|&&i| explained(i)).count();
        if unrecorded > explainable {
            report.unexplained += unrecorded - explainable;
            let since = |t: Instant| {
                faults
                    .origin
                    .map_or(0.0, |o| t.saturating_duration_since(o).as_secs_f64())
            };
            let story: Vec<String> = seen
                .iter()
                .map(|&i| {
                    let a = &journal.arrivals[i];
                    let closed = journal
                        .closed
                        .get(&a.connection)
                        .map_or("open".to_owned(), |&c| format!("closed {:.2}", since(c)));
                    let last = last_on_connection.get(&a.connection).copied();
                    let ended_on = match last {
                        Some(l) if l == i => "this".to_owned(),
                        Some(l) => format!("{:?}", reply_kind(&journal.arrivals[l].reply)),
                        None => "?".to_owned(),
                    };
                    format!(
                        "{:?} at {:.2} on connection {} ({closed}, its last arrival: {ended_on})",
                        reply_kind(&a.reply),
                        since(a.at),
                        a.connection
                    )
                })
                .collect();
            let rows: Vec<String> = recorded
                .iter()
                .map(|r| format!("#{} {:?}", r.attempt, attempt_kind(r)))
                .collect();
            report.note(format!(
                "{} (event {}, {}): {unrecorded} answered attempts never recorded, {explainable} \
                 explained by faults; arrivals: {}; recorded: {}",
                e.message_id,
                e.id,
                e.status,
                story.join(", "),
                rows.join(", ")
            ));
        }

        let ok_seen = count(&mut seen_kinds(), Kind::Ok);
        let ok_recorded = count(&mut recorded_kinds(), Kind::Ok);
        match e.status.as_str() {
            "delivered" => {
                report.delivered += 1;
                report.duplicates += ok_seen.saturating_sub(1);
                if ok_recorded == 0 || ok_seen == 0 {
                    report.mismatched += 1;
                    report.note(format!(
                        "event {} is delivered with {ok_recorded} recorded and {ok_seen} received 2xx",
                        e.id
                    ));
                }
            }
            "failed" => {
                report.failed += 1;
                report.duplicates += ok_seen;
                if e.attempts != expected.max_attempts || ok_recorded > 0 {
                    report.mismatched += 1;
                    report.note(format!(
                        "event {} failed after {} attempts with {ok_recorded} recorded 2xx",
                        e.id, e.attempts
                    ));
                }
            }
            other => {
                report.lost += 1;
                report.note(format!("event {} is still {other}", e.id));
            }
        }
    }
    check_order(outbound, journal, &mut report);
    report
}

/// Counts the ordered deliveries whose first arrival answered 200 came after that of a later
/// event of their key (same configuration, same key value).
fn check_order(outbound: &[OutboundRow], journal: &Journal, report: &mut Report) {
    let ordered: HashMap<&str, (Option<i64>, &str, i64)> = outbound
        .iter()
        .filter_map(|e| {
            e.ordering
                .as_ref()
                .map(|(key, seq)| (e.message_id.as_str(), (e.config_id, key.as_str(), *seq)))
        })
        .collect();
    if ordered.is_empty() {
        return;
    }
    let mut successes: Vec<&wirehook_testkit::receiver::Arrival> = journal
        .arrivals
        .iter()
        .filter(|a| a.reply == Reply::Status(200))
        .collect();
    successes.sort_by_key(|a| a.at);
    let mut seen = HashSet::new();
    let mut highest: HashMap<(Option<i64>, &str), i64> = HashMap::new();
    for arrival in successes {
        let Some(id) = arrival.webhook_id.as_deref() else {
            continue;
        };
        let Some(&(config, key, seq)) = ordered.get(id) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        report.ordered += 1;
        let top = highest.entry((config, key)).or_insert(0);
        if seq < *top {
            report.out_of_order += 1;
            report.note(format!(
                "config {config:?} key {key}: sequence {seq} first arrived after {top}"
            ));
        } else {
            *top = seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirehook_testkit::receiver::Arrival;

    struct Run {
        start: Instant,
        journal: Journal,
        faults: Faults,
        outbound: Vec<OutboundRow>,
        attempts: Vec<AttemptRow>,
    }

    impl Run {
        /// One accepted source event (key `k`, id 1) fanned out to one event (id 10, config 1).
        fn new(status: &str, attempts: i32) -> Self {
            Self {
                start: Instant::now(),
                journal: Journal::default(),
                faults: Faults::default(),
                outbound: vec![OutboundRow {
                    id: 10,
                    message_id: "msg_a".into(),
                    config_id: Some(1),
                    parent_event_id: Some(1),
                    status: status.into(),
                    attempts,
                    ordering: None,
                }],
                attempts: Vec::new(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }

        fn arrive(&mut self, ms: u64, reply: Reply, connection: u64) -> &mut Self {
            self.journal.arrivals.push(Arrival {
                webhook_id: Some("msg_a".into()),
                path: "/c/1".into(),
                reply,
                at: self.at(ms),
                connection,
                headers: Default::default(),
                body: Default::default(),
            });
            self
        }

        fn record(
            &mut self,
            attempt: i32,
            status_code: Option<i32>,
            error: Option<&str>,
        ) -> &mut Self {
            self.attempts.push(AttemptRow {
                event_id: 10,
                attempt,
                status_code,
                error_kind: error.map(str::to_owned),
            });
            self
        }

        fn check(&self) -> Report {
            let expected = Expected {
                accepted: vec!["k".into()],
                fan_out: 1,
                max_attempts: 3,
                paths: HashMap::from([(1, "/c/1".to_owned())]),
            };
            let inbound = [InboundRow {
                id: 1,
                key: Some("k".into()),
            }];
            check(
                &expected,
                &inbound,
                &self.outbound,
                &self.attempts,
                &self.journal,
                &self.faults,
            )
        }
    }

    #[test]
    fn an_ordered_event_arriving_after_a_later_one_of_its_key_is_out_of_order() {
        let row = |id: i64, msg: &str, seq: i64| OutboundRow {
            id,
            message_id: msg.into(),
            config_id: Some(1),
            parent_event_id: Some(1),
            status: "delivered".into(),
            attempts: 1,
            ordering: Some(("call-1".into(), seq)),
        };
        let start = Instant::now();
        let arrival = |ms: u64, msg: &str, reply: Reply| Arrival {
            webhook_id: Some(msg.into()),
            path: "/c/1".into(),
            reply,
            at: start + Duration::from_millis(ms),
            connection: 0,
            headers: Default::default(),
            body: Default::default(),
        };
        let outbound = [row(10, "msg_1", 1), row(11, "msg_2", 2)];
        let in_order = Journal {
            arrivals: vec![
                arrival(0, "msg_1", Reply::Status(500)),
                arrival(10, "msg_1", Reply::Status(200)),
                arrival(20, "msg_2", Reply::Status(200)),
                arrival(30, "msg_1", Reply::Status(200)),
            ],
            ..Journal::default()
        };
        let mut report = Report::default();
        check_order(&outbound, &in_order, &mut report);
        assert_eq!(report.out_of_order, 0);
        let inverted = Journal {
            arrivals: vec![
                arrival(0, "msg_2", Reply::Status(200)),
                arrival(10, "msg_1", Reply::Status(200)),
            ],
            ..Journal::default()
        };
        check_order(&outbound, &inverted, &mut report);
        assert_eq!(report.out_of_order, 1);
        assert!(!report.passed());
    }

    #[test]
    fn a_delivery_recorded_as_its_receiver_answered_passes() {
        let mut run = Run::new("delivered", 2);
        run.arrive(0, Reply::Status(500), 0)
            .arrive(1000, Reply::Status(200), 0);
        run.record(1, Some(500), Some("http_status"))
            .record(2, Some(200), None);
        let report = run.check();
        assert!(report.passed(), "{report:?}");
        assert_eq!(
            (report.events, report.delivered, report.duplicates),
            (1, 1, 0)
        );
    }

    #[test]
    fn an_event_still_pending_is_lost() {
        let mut run = Run::new("pending", 1);
        run.arrive(0, Reply::Status(500), 0)
            .record(1, Some(500), None);
        let report = run.check();
        assert_eq!(report.lost, 1);
        assert!(!report.passed());
    }

    #[test]
    fn an_accepted_source_event_missing_from_the_database_is_lost() {
        let mut run = Run::new("delivered", 1);
        run.arrive(0, Reply::Status(200), 0)
            .record(1, Some(200), None);
        run.outbound.clear();
        let expected = Expected {
            accepted: vec!["k".into(), "gone".into()],
            fan_out: 1,
            max_attempts: 3,
            paths: HashMap::new(),
        };
        let report = check(
            &expected,
            &[],
            &[],
            &[],
            &Journal::default(),
            &Faults::default(),
        );
        assert_eq!((report.lost_inbound, report.lost), (2, 2));
    }

    #[test]
    fn a_delivered_event_whose_receiver_never_answered_2xx_is_mismatched() {
        let mut run = Run::new("delivered", 1);
        run.arrive(0, Reply::Reset, 0).record(1, Some(200), None);
        let report = run.check();
        assert!(report.mismatched >= 1, "{report:?}");
        assert!(!report.passed());
    }

    #[test]
    fn a_failed_event_needs_every_attempt_recorded_as_a_failure() {
        let mut run = Run::new("failed", 2);
        run.arrive(0, Reply::Status(500), 0)
            .arrive(10, Reply::Status(500), 0);
        run.record(1, Some(500), None).record(2, Some(500), None);
        assert_eq!(run.check().mismatched, 1);
    }

    #[test]
    fn a_hang_is_recorded_as_a_timeout_and_a_reset_as_a_connection_error() {
        let mut run = Run::new("failed", 3);
        run.arrive(0, Reply::Hang(Duration::from_secs(2)), 0)
            .arrive(10, Reply::Reset, 1)
            .arrive(20, Reply::Status(500), 2);
        run.record(1, None, Some("timeout"))
            .record(2, None, Some("other"))
            .record(3, Some(500), Some("http_status"));
        let report = run.check();
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.failed, 1);
    }

    #[test]
    fn an_unrecorded_2xx_on_the_connection_of_a_killed_worker_is_an_explained_duplicate() {
        let mut run = Run::new("delivered", 1);
        run.arrive(0, Reply::Status(200), 7)
            .arrive(3000, Reply::Status(200), 8);
        run.record(1, Some(200), None);
        run.faults.kills.push(run.at(5));
        run.journal.closed.insert(7, run.at(6));
        let report = run.check();
        assert!(report.passed(), "{report:?}");
        assert_eq!(
            (report.duplicates, report.unrecorded, report.unexplained),
            (1, 1, 0)
        );
    }

    #[test]
    fn an_unrecorded_2xx_that_no_fault_explains_fails_the_run() {
        let mut run = Run::new("delivered", 1);
        run.arrive(0, Reply::Status(200), 7)
            .arrive(3000, Reply::Status(200), 8);
        run.record(1, Some(200), None);
        // A kill long after the connection closed explains nothing.
        run.journal.closed.insert(7, run.at(6));
        run.faults.kills.push(run.at(20_000));
        let report = run.check();
        assert_eq!((report.duplicates, report.unexplained), (1, 1));
        assert!(!report.passed());
    }

    #[test]
    fn an_unrecorded_reset_is_explained_only_by_a_kill_right_after_it() {
        let mut run = Run::new("delivered", 1);
        run.arrive(0, Reply::Reset, 1)
            .arrive(3000, Reply::Status(200), 2);
        run.record(1, Some(200), None);
        run.journal.closed.insert(1, run.at(0));
        run.faults.kills.push(run.at(2500));
        assert_eq!(run.check().unexplained, 1);
        run.faults.kills.push(run.at(400));
        assert!(run.check().passed());
    }

    #[test]
    fn an_unrecorded_hang_is_explained_by_a_kill_right_after_its_timeout() {
        let mut run = Run::new("delivered", 1);
        run.arrive(0, Reply::Hang(Duration::from_secs(3)), 1)
            .arrive(9000, Reply::Status(200), 2);
        run.record(1, Some(200), None);
        // The worker timed out and closed the connection at 1 s.
        run.journal.closed.insert(1, run.at(1000));
        run.faults.kills.push(run.at(4000));
        assert_eq!(
            run.check().unexplained,
            1,
            "a kill 3 s later explains nothing"
        );
        run.faults.kills.push(run.at(1010));
        assert!(run.check().passed());
    }

    #[test]
    fn an_unrecorded_answer_on_a_connection_reset_before_the_kill_is_explained_by_timing() {
        let mut run = Run::new("delivered", 1);
        // A 200 and then a reset on one connection: the receiver closed it, not the kill.
        run.arrive(0, Reply::Status(200), 7)
            .arrive(50, Reply::Reset, 7)
            .arrive(3000, Reply::Status(200), 8);
        run.record(1, Some(200), None);
        run.journal.closed.insert(7, run.at(50));
        run.faults.kills.push(run.at(3000));
        assert_eq!(
            run.check().unexplained,
            2,
            "a kill 3 s after the close explains neither the 200 nor the reset"
        );
        run.faults.kills.push(run.at(60));
        assert!(run.check().passed());
    }

    #[test]
    fn an_unrecorded_answer_on_a_connection_that_ended_on_a_200_needs_its_own_kill() {
        let mut run = Run::new("delivered", 1);
        // The connection closed before the kill after a plain 200: nothing of the receiver's
        // or of a timeout closed it, so the kill right after is someone else's.
        run.arrive(0, Reply::Status(200), 7)
            .arrive(3000, Reply::Status(200), 8);
        run.record(1, Some(200), None);
        run.journal.closed.insert(7, run.at(50));
        run.faults.kills.push(run.at(60));
        assert_eq!(run.check().unexplained, 1);
    }

    #[test]
    fn an_unrecorded_attempt_during_a_database_outage_is_explained() {
        let mut run = Run::new("delivered", 1);
        run.arrive(1000, Reply::Status(500), 0)
            .arrive(9000, Reply::Status(200), 0);
        run.record(1, Some(200), None);
        run.faults.outages.push((run.at(1500), run.at(4000)));
        let report = run.check();
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.unrecorded, 1);
    }

    #[test]
    fn a_recorded_answer_the_receiver_never_gave_is_mismatched() {
        let mut run = Run::new("failed", 3);
        run.arrive(0, Reply::Status(500), 0)
            .arrive(10, Reply::Status(500), 0);
        run.record(1, Some(500), None)
            .record(2, Some(500), None)
            .record(3, Some(500), None);
        assert_eq!(run.check().mismatched, 1);
    }

    #[test]
    fn a_delivery_to_another_configurations_path_is_mismatched() {
        let mut run = Run::new("delivered", 1);
        run.arrive(0, Reply::Status(200), 0)
            .record(1, Some(200), None);
        run.journal.arrivals[0].path = "/c/2".into();
        assert_eq!(run.check().mismatched, 1);
    }
}
