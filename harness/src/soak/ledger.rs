//! Accounting for every accepted event at the end of a soak run. Pure: the run gathers what
//! the database still holds and what the receiver saw, and [`account`] decides.
//!
//! Retention deletes events during the run, so the database alone cannot say what became of an
//! early event. The run learns each accepted event's delivery (`webhook-id`) while it is young
//! (well inside the retention window), and at the end an event is accounted for when:
//! - its fate is [`Fate::Delivered`]: the receiver answered its `webhook-id` 2xx, and its row
//!   is `delivered` or gone (retention deletes only final-state events);
//! - its fate is failing or hanging: the receiver saw all [`MAX_ATTEMPTS`] attempts, and its
//!   row is `failed` or gone.
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

/// Every accepted source event, as far as the run could follow it.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Their deliveries.
    pub tracked: Vec<Tracked>,
    /// Accepted source events whose delivery was not in the database right after the answer.
    pub without_delivery: Vec<i64>,
}

impl Ledger {
    /// Source events accepted.
    pub fn accepted(&self) -> usize {
        self.tracked.len() + self.without_delivery.len()
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
    /// The first few lost ones, for the log.
    pub examples: Vec<String>,
}

/// Accounts for every event of `ledger`: `statuses` are the outbound rows still in the
/// database (`message_id` → status), `received` what the receiver saw of a `webhook-id`.
pub fn account(
    ledger: &Ledger,
    statuses: &HashMap<String, String>,
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
        let status = statuses.get(&t.message_id).map(String::as_str);
        match t.fate {
            Fate::Delivered if seen.ok >= 1 && matches!(status, None | Some("delivered")) => {
                out.delivered += 1;
            }
            Fate::Failing | Fate::Hanging
                if seen.arrivals >= MAX_ATTEMPTS && matches!(status, None | Some("failed")) =>
            {
                out.failed += 1;
            }
            fate => lost(
                &mut out,
                format!(
                    "{} ({fate:?}): {} arrivals, {} answered 2xx, row {}",
                    t.message_id,
                    seen.arrivals,
                    seen.ok,
                    status.unwrap_or("purged")
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
            without_delivery: Vec::new(),
        }
    }

    fn run(ledger: &Ledger, rows: &[(&str, &str)], seen: &[(&str, Received)]) -> Account {
        let statuses = rows
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
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

    #[test]
    fn a_failed_event_missing_an_attempt_is_lost() {
        let l = ledger(&[("c", Fate::Failing)]);
        let short = Received {
            arrivals: MAX_ATTEMPTS - 1,
            ok: 0,
        };
        assert_eq!(run(&l, &[("c", "failed")], &[("c", short)]).lost, 1);
    }

    #[test]
    fn an_accepted_source_event_without_a_delivery_is_lost() {
        let mut l = ledger(&[]);
        l.without_delivery.push(7);
        let account = run(&l, &[], &[]);
        assert_eq!((account.events, account.lost), (1, 1));
    }
}
