//! Deliveries parked behind a failing endpoint's probe.
//!
//! While an endpoint is gated (failing again and again), one new delivery at a time probes it (`probe_until` on its
//! configuration: the in-flight attempt's lease, then the hold after a failed probe). Every
//! other new delivery that comes up meanwhile is *parked*: it stays `pending` with no
//! `next_attempt_at` and no job, spending neither an attempt nor a write until it is woken:
//! - all of them when a probe is delivered ([`wake`], in the transaction that records it);
//! - one with the fewest attempts at the end of a gated endpoint's hold ([`probe_at`], in the transaction
//!   that records the failure that set the hold);
//! - likewise one when the probe is overdue (its series ended, or its job was lost), so that
//!   an endpoint with parked deliveries always has a probe coming ([`sweep`]);
//! - cancelled when the configuration is disabled, deactivated or deleted ([`cancel`]).
//!
//! A park and a wake serialize on the configuration row (the park holds it `FOR SHARE`, the
//! wake's transaction has it locked for update), so a delivery is never parked after the
//! wake that should have taken it.

use chrono::{DateTime, Utc};
use entity::{ConfigId, ConfigStatus, EventId, EventStatus};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};

use super::{Due, push_grouped, push_jobs};

/// Most deliveries one [`wake`] sets going; the [`sweep`] wakes the rest, tick after tick.
pub const WAKE_CHUNK: u64 = 10_000;

/// How long past its due time a failing endpoint's probe may be before the [`sweep`] wakes a
/// parked delivery to probe instead (the due retry's job normally starts within a second).
/// Waking one too early costs two writes, never a second attempt: the woken delivery must
/// claim the probe slot, and parks again when the due retry has it.
pub const PROBE_GRACE_SECS: i64 = 5;

/// Most configurations one [`sweep`] looks at.
const SWEEP_CONFIGS: i64 = 1_000;

/// `pending` with no attempt planned and not waiting on its ordering key
/// ([`super::ordered`]), on the events aliased `alias`: the partial index
/// `webhook_events_parked` covers exactly this predicate, which is why it is spelled with
/// literals (a parameter would keep a generic plan off the index).
fn parked_predicate(alias: &str) -> String {
    format!(
        "{alias}status = {} AND {alias}next_attempt_at IS NULL AND NOT {alias}waiting_on_key",
        EventStatus::Pending.sql_literal()
    )
}

/// Failed attempts in a row (no delivery between them) after which an endpoint is *gated*: one
/// delivery at a time, the probe, and the others parked. Fewer, and its deliveries go as usual:
/// a busy endpoint that fails or hangs now and then must not be throttled by each failure.
pub const GATE_AFTER_FAILURES: i32 = 3;

/// Parks the pending `event_id` (loaded with `attempts`) if its endpoint is still gated;
/// `false` when it is not parked (the endpoint recovered, or the event moved on), and the
/// caller delivers. A gated endpoint always has a probe coming: in flight, scheduled
/// ([`probe_at`]), or appointed by the [`sweep`] once overdue.
pub async fn park(
    conn: &impl ConnectionTrait,
    event_id: EventId,
    attempts: i32,
    config_id: ConfigId,
) -> Result<bool, DbErr> {
    let parked = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "WITH probing AS ( \
                   SELECT id FROM webhook_configs \
                   WHERE id = $3 AND status = {active} AND failing_since IS NOT NULL \
                     AND failed_attempts >= {gate} \
                   FOR SHARE) \
                 UPDATE webhook_events SET next_attempt_at = NULL, updated_at = now() \
                 WHERE id = $1 AND status = {pending} AND attempts = $2 \
                   AND EXISTS (SELECT 1 FROM probing)",
                active = ConfigStatus::Active.sql_literal(),
                pending = EventStatus::Pending.sql_literal(),
                gate = GATE_AFTER_FAILURES,
            ),
            [event_id.into(), attempts.into(), config_id.into()],
        ))
        .await?;
    Ok(parked.rows_affected() == 1)
}

/// Queues up to `limit` parked deliveries of `config_id`, oldest first, due now; returns how
/// many. The rows are locked once in a CTE and updated as `id = ANY(ARRAY(…))`: written as
/// `id IN (subquery … FOR UPDATE)` or as a join, and with statistics taken before the rows
/// were parked, the planner nests a rescan of the subquery in a loop over the rows, which took
/// minutes for 10,000 parked deliveries while the recovering probe's transaction held its
/// configuration locked (measured: > 20 s against 0.7 s). The caller holds the configuration's
/// row lock (or takes none and accepts that a concurrent park may wait for the next wake).
pub async fn wake(
    conn: &impl ConnectionTrait,
    config_id: ConfigId,
    limit: u64,
) -> Result<u64, DbErr> {
    wake_due(conn, config_id, limit, None, "id").await
}

/// Appoints a parked delivery of `config_id` to probe the gated endpoint `at`: its
/// `next_attempt_at` and the configuration's `probe_until` are both `at`, which is how the
/// engine knows it ([`is_appointed`]); returns whether there was one. It is the one with the
/// fewest attempts (the newest of those): the probe tests the endpoint, not a delivery that
/// may fail every time. That sorts the endpoint's parked deliveries, once per hold (at least
/// 1 s apart, minutes for a long outage). The caller holds the configuration's row lock.
pub async fn probe_at(
    conn: &impl ConnectionTrait,
    config_id: ConfigId,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE webhook_configs SET probe_until = $2 WHERE id = $1",
        [config_id.into(), at.into()],
    ))
    .await?;
    Ok(wake_due(conn, config_id, 1, Some(at), "attempts, id DESC").await? == 1)
}

/// Whether a delivery due `next_attempt_at` is the probe [`probe_at`] appointed for an endpoint
/// held until `probe_until`: it may probe a gated endpoint even if it has failed before.
pub fn is_appointed(
    next_attempt_at: Option<DateTime<Utc>>,
    probe_until: Option<DateTime<Utc>>,
) -> bool {
    next_attempt_at.is_some() && next_attempt_at == probe_until
}

/// [`wake`] due `at` (`None`: now), taking them in `order` (an `ORDER BY` list).
async fn wake_due(
    conn: &impl ConnectionTrait,
    config_id: ConfigId,
    limit: u64,
    at: Option<DateTime<Utc>>,
    order: &'static str,
) -> Result<u64, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "WITH picked AS ( \
                   SELECT id FROM webhook_events \
                   WHERE webhook_config_id = $1 AND {parked} \
                   ORDER BY {order} LIMIT $2 FOR NO KEY UPDATE) \
                 UPDATE webhook_events AS e \
                 SET next_attempt_at = COALESCE($3, now()), updated_at = now() \
                 WHERE e.id = ANY(ARRAY(SELECT id FROM picked)) AND {parked_e} \
                 RETURNING e.id",
                parked = parked_predicate(""),
                parked_e = parked_predicate("e."),
            ),
            [config_id.into(), clamp(limit).into(), at.into()],
        ))
        .await?;
    let mut ids = rows
        .iter()
        .map(|row| row.try_get::<EventId>("", "id"))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    match at {
        None => push_grouped(conn, &ids).await?,
        Some(at) => {
            let jobs: Vec<(EventId, Due)> = ids.iter().map(|id| (*id, Due::At(at))).collect();
            push_jobs(conn, &jobs).await?;
        }
    }
    Ok(ids.len() as u64)
}

/// Cancels every parked delivery of `config_id`, and every event waiting on an ordering key of
/// it ([`super::ordered::cancel_waiting`]), with `why` as its last error; returns how many.
pub async fn cancel(
    conn: &impl ConnectionTrait,
    config_id: ConfigId,
    why: &str,
) -> Result<u64, DbErr> {
    let cancelled = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "WITH picked AS ( \
                   SELECT id FROM webhook_events \
                   WHERE webhook_config_id = $1 AND {parked} \
                   ORDER BY id FOR NO KEY UPDATE) \
                 UPDATE webhook_events AS e SET status = $3, last_error = $2, updated_at = now() \
                 WHERE e.id = ANY(ARRAY(SELECT id FROM picked)) AND {parked_e}",
                parked = parked_predicate(""),
                parked_e = parked_predicate("e."),
            ),
            [
                config_id.into(),
                why.into(),
                EventStatus::Cancelled.as_str().into(),
            ],
        ))
        .await?;
    let waiting = super::ordered::cancel_waiting(conn, config_id, why).await?;
    Ok(cancelled.rows_affected() + waiting)
}

/// What one [`sweep`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Configurations with parked deliveries.
    pub configs: u64,
    /// Deliveries queued again: their endpoint recovered, or they probe an overdue one.
    pub woken: u64,
    /// Deliveries cancelled because their configuration is no longer active.
    pub cancelled: u64,
}

/// The maintenance leader's safety net, run every few seconds: for each configuration with
/// parked deliveries, cancels them when it is no longer active, wakes them when it is no longer
/// failing (re-enabled by an operator, or a wake that ran out of [`WAKE_CHUNK`]), and wakes the
/// oldest when its probe is more than [`PROBE_GRACE_SECS`] overdue. Costs one index probe per
/// such configuration when there is nothing to do.
pub async fn sweep(db: &DatabaseConnection) -> Result<Swept, DbErr> {
    let parked = parked_predicate("");
    // A loose index scan: one probe of `webhook_events_parked` per configuration, however many
    // deliveries each has parked.
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "WITH RECURSIVE c(id) AS ( \
                   (SELECT webhook_config_id FROM webhook_events \
                    WHERE {parked} AND webhook_config_id IS NOT NULL \
                    ORDER BY webhook_config_id LIMIT 1) \
                   UNION ALL \
                   SELECT (SELECT e.webhook_config_id FROM webhook_events e \
                           WHERE {parked_e} AND e.webhook_config_id > c.id \
                           ORDER BY e.webhook_config_id LIMIT 1) \
                   FROM c WHERE c.id IS NOT NULL) \
                 SELECT cfg.id, cfg.status, cfg.failing_since IS NOT NULL \
                        AND cfg.failed_attempts >= {gate} AS gated, cfg.probe_until \
                 FROM c JOIN webhook_configs cfg ON cfg.id = c.id \
                 LIMIT $1",
                parked_e = parked_predicate("e."),
                gate = GATE_AFTER_FAILURES,
            ),
            [SWEEP_CONFIGS.into()],
        ))
        .await?;
    let mut swept = Swept::default();
    for row in rows {
        let id: ConfigId = row.try_get("", "id")?;
        let status: ConfigStatus = row.try_get("", "status")?;
        let gated: bool = row.try_get("", "gated")?;
        let probe_until: Option<DateTime<Utc>> = row.try_get("", "probe_until")?;
        swept.configs += 1;
        let action = Action::for_config(status, gated, probe_until, Utc::now());
        if action == Action::Wait {
            continue;
        }
        // Decide again under the configuration's lock: the listing above read no lock.
        let txn = db.begin().await?;
        let locked = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "SELECT status, failing_since IS NOT NULL AND failed_attempts >= {gate} \
                            AS gated, probe_until \
                     FROM webhook_configs WHERE id = $1 FOR NO KEY UPDATE",
                    gate = GATE_AFTER_FAILURES
                ),
                [id.into()],
            ))
            .await?;
        let Some(locked) = locked else {
            continue;
        };
        let action = Action::for_config(
            locked.try_get("", "status")?,
            locked.try_get("", "gated")?,
            locked.try_get("", "probe_until")?,
            Utc::now(),
        );
        match action {
            Action::Wait => {}
            Action::Cancel => {
                swept.cancelled += cancel(&txn, id, "configuration deleted or not active").await?;
            }
            Action::WakeAll => swept.woken += wake(&txn, id, WAKE_CHUNK).await?,
            Action::WakeOneToProbe => {
                swept.woken += u64::from(probe_at(&txn, id, Utc::now()).await?);
            }
        }
        txn.commit().await?;
    }
    Ok(swept)
}

/// What the [`sweep`] does with one configuration's parked deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The endpoint is gated and its probe is in flight or due soon.
    Wait,
    /// The configuration is disabled, inactive or deleted.
    Cancel,
    /// The endpoint is not gated: nothing holds them back.
    WakeAll,
    /// The endpoint is gated and no probe is coming: the one with the fewest attempts is appointed to probe.
    WakeOneToProbe,
}

impl Action {
    fn for_config(
        status: ConfigStatus,
        gated: bool,
        probe_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        if status != ConfigStatus::Active {
            return Self::Cancel;
        }
        if !gated {
            return Self::WakeAll;
        }
        let grace = chrono::Duration::seconds(PROBE_GRACE_SECS);
        match probe_until {
            Some(until) if until + grace >= now => Self::Wait,
            _ => Self::WakeOneToProbe,
        }
    }
}

fn clamp(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).expect("valid time")
    }

    #[test]
    fn parked_deliveries_of_an_inactive_configuration_are_cancelled() {
        for status in [ConfigStatus::Inactive, ConfigStatus::Disabled] {
            assert_eq!(
                Action::for_config(status, true, Some(at(100)), at(1)),
                Action::Cancel
            );
        }
    }

    #[test]
    fn parked_deliveries_of_a_healthy_endpoint_are_all_woken() {
        assert_eq!(
            Action::for_config(ConfigStatus::Active, false, None, at(0)),
            Action::WakeAll
        );
    }

    #[test]
    fn a_failing_endpoint_with_a_probe_coming_keeps_its_deliveries_parked() {
        let probe_due = Some(at(60));
        assert_eq!(
            Action::for_config(ConfigStatus::Active, true, probe_due, at(10)),
            Action::Wait
        );
        // Due a moment ago: its job is about to run.
        assert_eq!(
            Action::for_config(ConfigStatus::Active, true, probe_due, at(62)),
            Action::Wait
        );
    }

    #[test]
    fn a_failing_endpoint_whose_probe_is_overdue_or_gone_gets_one_new_probe() {
        assert_eq!(
            Action::for_config(ConfigStatus::Active, true, Some(at(60)), at(66)),
            Action::WakeOneToProbe
        );
        assert_eq!(
            Action::for_config(ConfigStatus::Active, true, None, at(1)),
            Action::WakeOneToProbe
        );
    }
}
