//! Accounting for every accepted event at the end of a soak run. Pure: the run gathers what
//! the database still holds and what the receiver saw, and [`account`] decides.
//!
//! Retention deletes events during the run, so the database alone cannot say what became of an
//! early event. The run learns each accepted event's delivery (`webhook-id`) while it is young
//! (well inside the retention window), and reads the final row of each delivery planned to fail
//! as soon as it settles, before retention can delete it. At the end an event is accounted for
//! when:
//! - its fate is [`Fate::Delivered`]: the receiver answered its `webhook-id` 2xx, and its row
//!   is `delivered` or gone (retention deletes only final-state events);
//! - its fate is failing or hanging: its row was seen `failed` after all [`MAX_ATTEMPTS`]
//!   attempts, or (if the run never saw the row settle) the receiver saw all the attempts and
//!   the row is gone.
//!
//! The row's attempt count, not the receiver's, decides a planned failure: an attempt that
//! times out before a starved receiver reads the request is a real failed attempt that the
//! receiver never counts ([`Account::unseen_attempts`] says how often that happened).
//!
//! Anything else is **lost**: still `pending` after the drain, a 2xx the database does not
//! know, an attempt missing, or an accepted source event without a delivery.

use std::collections::HashMap;

use super::plan::{Fate, MAX_ATTEMPTS};

/// One accepted event's delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// Its `webhook-id` (`message_id`).
    pub message_id: String,
    /// What the receiver does with it.
    pub fate: Fate,
}

/// What the receiver saw of one `webhook-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Received {
    /// Arrivals (attempts).
    pub arrivals: u32,
    /// Of which answered 2xx.
    pub ok: u32,
}

/// An outbound event's row as the database held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its status (`pending`, `delivered`, `failed`, …).
    pub status: String,
    /// Attempts recorded on it.
    pub attempts: u32,
}

impl Row {
    fn failed_for_good(&self) -> bool {
        self.status == "failed" && self.attempts >= MAX_ATTEMPTS
    }
}

/// Every accepted source event, as far as the run could follow it.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Their deliveries.
    pub tracked: Vec<Tracked>,
    /// Accepted source events whose delivery was not in the database right after the answer.
    pub without_delivery: Vec<i64>,
    /// Deliveries planned to fail whose row has not been seen in a final state yet.
    pub watching: Vec<String>,
    /// The final rows of deliveries planned to fail, read before retention could delete them.
    pub settled: HashMap<String, Row>,
}

impl Ledger {
    /// Source events accepted.
    pub fn accepted(&self) -> usize {
        self.tracked.len() + self.without_delivery.len()
    }

    /// Adds a delivery; one planned to fail is watched until its row settles.
    pub fn track(&mut self, message_id: String) {
        let fate = Fate::of(&message_id);
        if fate != Fate::Delivered {
            self.watching.push(message_id.clone());
        }
        self.tracked.push(Tracked { message_id, fate });
    }

    /// Records the rows read for watched deliveries: final ones settle, the rest stay watched.
    pub fn settle(&mut self, mut rows: HashMap<String, Row>) {
        self.watching.retain(|id| match rows.remove_entry(id) {
            Some((id, row)) if row.status != "pending" => {
                self.settled.insert(id, row);
                false
            }
            _ => true,
        });
    }
}

/// The end-of-run verdict on the accepted events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// Accepted events (one delivery each).
    pub events: usize,
    /// Delivered as planned.
    pub delivered: usize,
    /// Failed as planned, after every attempt.
    pub failed: usize,
    /// Not accounted for.
    pub lost: usize,
    /// Failed as planned, with fewer arrivals at the receiver than attempts on the row.
    pub unseen_attempts: usize,
    /// The first few lost ones, for the log.
    pub examples: Vec<String>,
}

/// Accounts for every event of `ledger`: `rows` are the outbound rows still in the database
/// (by `message_id`), `received` what the receiver saw of a `webhook-id`.
pub fn account(
    ledger: &Ledger,
    rows: &HashMap<String, Row>,
    received: impl Fn(&str) -> Option<Received>,
) -> Account {
    let mut out = Account {
        events: ledger.accepted(),
        ..Account::default()
    };
    let lost = |out: &mut Account, why: String| {
        out.lost += 1;
        if out.examples.len() < 20 {
            out.examples.push(why);
        }
    };
    for id in &ledger.without_delivery {
        lost(
            &mut out,
            format!("source event {id} was accepted without a delivery"),
        );
    }
    for t in &ledger.tracked {
        let seen = received(&t.message_id).unwrap_or_default();
        let row = rows
            .get(&t.message_id)
            .or_else(|| ledger.settled.get(&t.message_id));
        let status = row.map(|r| r.status.as_str());
        match t.fate {
            Fate::Delivered if seen.ok >= 1 && matches!(status, None | Some("delivered")) => {
                out.delivered += 1;
            }
            Fate::Failing | Fate::Hanging if row.is_some_and(Row::failed_for_good) => {
                out.failed += 1;
                if row.is_some_and(|r| seen.arrivals < r.attempts) {
                    out.unseen_attempts += 1;
                }
            }
            Fate::Failing | Fate::Hanging if row.is_none() && seen.arrivals >= MAX_ATTEMPTS => {
                out.failed += 1;
            }
            fate => lost(
                &mut out,
                format!(
                    "{} ({fate:?}): {} arrivals, {} answered 2xx, row {}",
                    t.message_id,
                    seen.arrivals,
                    seen.ok,
                    row.map_or("purged unseen".to_owned(), |r| format!(
                        "{} after {} attempts",
                        r.status, r.attempts
                    ))
                ),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(fates: &[(&str, Fate)]) -> Ledger {
        Ledger {
            tracked: fates
                .iter()
                .map(|(id, fate)| Tracked {
                    message_id: (*id).to_owned(),
                    fate: *fate,
                })
                .collect(),
            ..Ledger::default()
        }
    }

    fn row(status: &str, attempts: u32) -> Row {
        Row {
            status: status.to_owned(),
            attempts,
        }
    }

    fn rows(rows: &[(&str, &str)]) -> HashMap<String, Row> {
        rows.iter()
            .map(|(k, v)| ((*k).to_owned(), row(v, MAX_ATTEMPTS)))
            .collect()
    }

    fn run(ledger: &Ledger, rows_now: &[(&str, &str)], seen: &[(&str, Received)]) -> Account {
        let statuses = rows(rows_now);
        let seen: HashMap<String, Received> =
            seen.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        account(ledger, &statuses, |id| seen.get(id).copied())
    }

    const OK: Received = Received { arrivals: 1, ok: 1 };
    const ALL_FAILED: Received = Received {
        arrivals: MAX_ATTEMPTS,
        ok: 0,
    };

    #[test]
    fn delivered_and_failed_events_are_accounted_for_whether_purged_or_not() {
        let l = ledger(&[
            ("a", Fate::Delivered),
            ("b", Fate::Delivered),
            ("c", Fate::Failing),
            ("d", Fate::Hanging),
        ]);
        let account = run(
            &l,
            &[("a", "delivered"), ("c", "failed")],
            &[("a", OK), ("b", OK), ("c", ALL_FAILED), ("d", ALL_FAILED)],
        );
        assert_eq!(
            (
                account.events,
                account.delivered,
                account.failed,
                account.lost
            ),
            (4, 2, 2, 0),
            "{account:?}"
        );
    }

    #[test]
    fn an_event_still_pending_is_lost_even_if_its_receiver_answered() {
        let l = ledger(&[("a", Fate::Delivered)]);
        let account = run(&l, &[("a", "pending")], &[("a", OK)]);
        assert_eq!((account.delivered, account.lost), (0, 1));
    }

    #[test]
    fn a_delivery_its_receiver_never_answered_2xx_is_lost() {
        let l = ledger(&[("a", Fate::Delivered)]);
        assert_eq!(run(&l, &[], &[]).lost, 1);
    }

    const SHORT: Received = Received {
        arrivals: MAX_ATTEMPTS - 1,
        ok: 0,
    };

    #[test]
    fn a_purged_failure_seen_settling_counts_by_its_row_not_its_arrivals() {
        let mut l = ledger(&[("c", Fate::Failing), ("d", Fate::Hanging)]);
        l.watching = vec!["c".into(), "d".into()];
        l.settle(HashMap::from([(
            "c".to_owned(),
            row("failed", MAX_ATTEMPTS),
        )]));
        let account = run(&l, &[], &[("c", SHORT), ("d", SHORT)]);
        assert_eq!(
            (account.failed, account.unseen_attempts, account.lost),
            (1, 1, 1),
            "{account:?}"
        );
        assert!(
            account.examples[0].starts_with("d (Hanging)"),
            "{account:?}"
        );
    }

    #[test]
    fn a_failure_with_an_attempt_missing_on_its_row_is_lost() {
        let mut l = ledger(&[("c", Fate::Failing)]);
        l.watching = vec!["c".into()];
        l.settle(HashMap::from([(
            "c".to_owned(),
            row("failed", MAX_ATTEMPTS - 1),
        )]));
        assert_eq!(run(&l, &[], &[("c", ALL_FAILED)]).lost, 1);
    }

    #[test]
    fn a_purged_failure_never_seen_settling_needs_every_arrival() {
        let l = ledger(&[("c", Fate::Failing)]);
        assert_eq!(run(&l, &[], &[("c", SHORT)]).lost, 1);
    }

    #[test]
    fn a_watched_delivery_stays_watched_while_pending() {
        let mut l = Ledger::default();
        l.track("a".into());
        let failing = (0..100)
            .map(|i| format!("m{i}"))
            .find(|id| Fate::of(id) != Fate::Delivered)
            .expect("some id is planned to fail");
        l.track(failing.clone());
        assert_eq!(l.watching, vec![failing.clone()]);
        l.settle(HashMap::from([(failing.clone(), row("pending", 1))]));
        assert_eq!(l.watching, vec![failing.clone()]);
        l.settle(HashMap::from([(
            failing.clone(),
            row("failed", MAX_ATTEMPTS),
        )]));
        assert!(l.watching.is_empty());
        assert_eq!(l.settled[&failing], row("failed", MAX_ATTEMPTS));
    }

    #[test]
    fn an_accepted_source_event_without_a_delivery_is_lost() {
        let mut l = ledger(&[]);
        l.without_delivery.push(7);
        let account = run(&l, &[], &[]);
        assert_eq!((account.events, account.lost), (1, 1));
    }
}
