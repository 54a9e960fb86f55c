//! Where history is read: the lists of events and configurations go to a streaming standby
//! (`DATABASE_READ_URL`) while it is up and caught up, everything else to the primary.
//!
//! **Why only the lists.** The lists are what competes with delivery on a busy primary: filtered
//! scans, deep `OFFSET` pages and the totals. A list is a view of history "as of a moment"
//! anyway, so one a few milliseconds older costs the reader nothing. The reads of one object by
//! id (event details with their attempts, a configuration) stay on the primary although they
//! are history reads too: they are the reads a client makes right after a write of its own
//! (publish then get, create then get, retry then get, the test endpoint's `details.eventId`),
//! possibly through another api replica, and a standby cannot tell whether it has replayed that
//! write. Falling back to the primary on not-found would mend only the 404 of a new object: a
//! lagging standby would still answer a just-retried event as `failed` without the new attempt
//! and a just-updated configuration with its old URL. A causal check (the primary's WAL
//! position against the standby's replay position) costs a primary round trip per read, and
//! on a busy primary the standby is almost never at the current position, so the read would go
//! to the primary anyway. The detail reads are index probes of a few pages that stay in the
//! primary's cache; they are the cheapest reads the api makes.
//!
//! **Staleness is bounded.** Before a list runs on the standby, one query asks it how far
//! behind it is (nothing, when it has replayed everything it received; otherwise the age of
//! the last transaction it replayed). Past `DATABASE_READ_MAX_LAG_SECS` (a paused replay, a
//! long recovery conflict, a standby catching up after a restart) the list goes to the primary.
//!
//! **A standby that fails never fails a request.** Any error of the standby (it is down, its
//! pool is exhausted, PostgreSQL cancelled the query for a recovery conflict) runs the same read
//! on the primary. A connection error also marks the standby down: until a background probe
//! reaches it again (every [`PROBE_INTERVAL`]), lists go straight to the primary, so only the
//! request that found it down waits for the pool's acquire timeout.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// Counter: history reads by where they were answered (`from`: `standby` or `primary`) and,
/// for the primary, why (`reason`: `no_standby`, `lag`, `down`, `error`).
pub const HISTORY_READS_TOTAL: &str = "wirehook_history_reads_total";

/// How often a standby marked down is tried again.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The `application_name` of the read pool's connections, so that an operator (and the tests)
/// can tell them apart in the standby's `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "wirehook-api-history";

/// The standby's lag in seconds: 0 when it has replayed all the WAL it received, else the age
/// of the last transaction it replayed. On a server that is not in recovery both positions are
/// NULL, so a primary named as `DATABASE_READ_URL` counts as caught up. After a quiet spell the
/// first new write overstates the lag for the moment between its arrival and its replay (the
/// last replayed transaction is old); that errs the safe way, sending a list to the primary.
const LAG_SQL: &str = "SELECT CASE \
       WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
       ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) \
     END::float8 AS lag";

/// The pools history is read from: the primary always, a standby when configured.
#[derive(Clone)]
pub struct Reads {
    primary: DatabaseConnection,
    standby: Option<Arc<Standby>>,
}

struct Standby {
    db: DatabaseConnection,
    max_lag: Duration,
    /// Set by a connection error; cleared by the probe once the standby answers again.
    down: AtomicBool,
}

/// Where one read was answered, and why there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Standby,
    Primary(&'static str),
}

impl Reads {
    /// Every read on `primary`: no `DATABASE_READ_URL`.
    pub fn primary_only(primary: DatabaseConnection) -> Self {
        Self {
            primary,
            standby: None,
        }
    }

    /// Lists read from `standby` while it is at most `max_lag` behind.
    pub fn with_standby(
        primary: DatabaseConnection,
        standby: DatabaseConnection,
        max_lag: Duration,
    ) -> Self {
        Self {
            primary,
            standby: Some(Arc::new(Standby {
                db: standby,
                max_lag,
                down: AtomicBool::new(false),
            })),
        }
    }

    /// Runs `read` (a list: it may see the database a moment ago) on the standby when it is up
    /// and caught up, and on the primary otherwise or when the standby fails it.
    pub async fn list<T, F, Fut>(&self, read: F) -> Result<T, DbErr>
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let Some(standby) = &self.standby else {
            count(Route::Primary("no_standby"));
            return read(self.primary.clone()).await;
        };
        let route = standby.route().await;
        if route == Route::Standby {
            match read(standby.db.clone()).await {
                Ok(value) => {
                    count(Route::Standby);
                    return Ok(value);
                }
                Err(error) => {
                    standby.failed(&error);
                    count(Route::Primary("error"));
                    return read(self.primary.clone()).await;
                }
            }
        }
        count(route);
        read(self.primary.clone()).await
    }
}

impl Standby {
    /// Where the next list goes: asks the standby its lag unless it is marked down.
    async fn route(self: &Arc<Self>) -> Route {
        if self.down.load(Ordering::Acquire) {
            return Route::Primary("down");
        }
        match lag(&self.db).await {
            Ok(lag) if lag <= self.max_lag.as_secs_f64() => Route::Standby,
            Ok(lag) => {
                tracing::debug!(
                    lag_secs = lag,
                    "standby lags: history read from the primary"
                );
                Route::Primary("lag")
            }
            Err(error) => {
                self.failed(&error);
                Route::Primary("error")
            }
        }
    }

    /// Notes a failed read; a connection error marks the standby down and starts the probe that
    /// brings it back.
    fn failed(self: &Arc<Self>, error: &DbErr) {
        if !wirehook_core::process::is_connection_error(error) {
            tracing::warn!(%error, "history read failed on the standby; answered from the primary");
            return;
        }
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(%error, "standby unreachable: history read from the primary until it answers");
        let standby = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                // The api dropped its pools (a test app going away): nothing left to probe.
                let Some(standby) = standby.upgrade() else {
                    return;
                };
                if lag(&standby.db).await.is_ok() {
                    standby.down.store(false, Ordering::Release);
                    tracing::info!("standby answers again: history read from it");
                    return;
                }
            }
        });
    }
}

/// The standby's lag in seconds ([`LAG_SQL`]).
async fn lag(db: &DatabaseConnection) -> Result<f64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, LAG_SQL))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the lag query returned no row".into()))?;
    row.try_get::<f64>("", "lag")
}

fn count(route: Route) {
    match route {
        Route::Standby => {
            metrics::counter!(HISTORY_READS_TOTAL, "from" => "standby").increment(1);
        }
        Route::Primary(reason) => {
            metrics::counter!(HISTORY_READS_TOTAL, "from" => "primary", "reason" => reason)
                .increment(1);
        }
    }
}
