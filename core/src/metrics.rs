//! The Prometheus recorder both binaries install, and the names of the delivery metrics.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter: finished delivery attempts and skips, labelled `result` = `delivered` | `failed` |
/// `retry_scheduled` | `cancelled` | `parked` | `superseded`.
pub const DELIVERIES_TOTAL: &str = "wirehook_deliveries_total";

/// Histogram (seconds): one HTTP attempt, labelled `status_class` = `2xx` … `5xx` | `error`.
pub const ATTEMPT_DURATION: &str = "wirehook_delivery_attempt_duration_seconds";

/// Gauge: delivery jobs waiting in the queue (sampled from the database).
pub const QUEUE_PENDING: &str = "wirehook_queue_pending_jobs";

/// Gauge: age in seconds of the oldest job that is due and not yet started (0 when none).
pub const QUEUE_OLDEST_AGE: &str = "wirehook_queue_oldest_pending_age_seconds";

/// Counter: final-state events deleted by retention.
pub const PURGED_TOTAL: &str = "wirehook_retention_purged_events_total";

/// Gauge: days past the retention age kept at the last pass because they hold a pending event.
pub const RETENTION_DAYS_HELD: &str = "wirehook_retention_days_held";

/// Gauge: days of history partitions that exist after today (the leader keeps
/// `DAYS_AHEAD`; an insert for a day without its partition fails).
pub const PARTITION_DAYS_AHEAD: &str = "wirehook_history_partition_days_ahead";

/// Counter: finished jobs deleted from `apalis.jobs` past `JOB_HISTORY_SECS`.
pub const JOBS_DELETED_TOTAL: &str = "wirehook_queue_finished_jobs_deleted_total";

/// Counter: parked deliveries the maintenance sweep handled, labelled `action` = `woken` |
/// `cancelled`.
pub const PARKED_SWEPT_TOTAL: &str = "wirehook_parked_deliveries_swept_total";

/// Gauge: rows and on-disk bytes of the tables that grow with traffic, labelled `table` =
/// `apalis.jobs` | `webhook_events` | `webhook_attempts`.
pub const TABLE_ROWS: &str = "wirehook_table_rows";
pub const TABLE_BYTES: &str = "wirehook_table_bytes";

/// Counter: ordered keys the maintenance sweep handled (`core::queue::ordered::sweep`),
/// labelled `action` = `released` | `idled`.
pub const ORDERED_SWEPT_TOTAL: &str = "wirehook_ordered_keys_swept_total";

/// Gauge: ordered keys blocked now (held under `onStuck: block` past `maxHoldSeconds`).
pub const ORDERED_BLOCKED_KEYS: &str = "wirehook_ordered_blocked_keys";

/// Gauge: seconds the oldest blocked ordered key has been held (0 when none is).
pub const ORDERED_OLDEST_BLOCKED_AGE: &str = "wirehook_ordered_oldest_blocked_age_seconds";

/// Counter: deliveries of an ordered configuration sent unordered because the event had no
/// usable value at the configuration's ordering key (counted by the api that accepted it).
pub const ORDERED_MISSING_KEY_TOTAL: &str = "wirehook_ordered_missing_key_total";

/// Counter: configurations disabled by the service, labelled `reason` = `gone` | `failing`.
pub const CONFIGS_DISABLED_TOTAL: &str = "wirehook_configs_disabled_total";

/// Buckets of [`ATTEMPT_DURATION`]: 5 ms to the longest allowed timeout.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
];

/// How often the recorder folds recorded histogram samples into their buckets.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The name of the thread that runs the recorder's upkeep.
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

/// The process-wide recorder's handle; installs the recorder, and its upkeep, on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(ATTEMPT_DURATION.into()), &DURATION_BUCKETS);
            // Only fails on empty buckets, which the constant rules out; fall back to summaries.
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] for the life of the process.
///
/// The recorder keeps every histogram sample it is given until they are folded into buckets,
/// which happens only on a scrape or an upkeep. A worker nobody scrapes (no Prometheus, or one
/// scraping every few minutes) would otherwise keep every attempt's duration: ~10 bytes each,
/// without end. A thread rather than a task, so that it runs whichever runtime, if any, the
/// first caller is on.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name(UPKEEP_THREAD.to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    match spawned {
        Ok(thread) => {
            let _ = UPKEEP.set(thread.thread().clone());
        }
        Err(error) => {
            tracing::warn!(%error, "cannot start the metrics upkeep; histograms fold on scrape only");
        }
    }
}

/// The upkeep's thread, once the recorder is installed and the thread started.
static UPKEEP: OnceLock<std::thread::Thread> = OnceLock::new();

/// The thread running the recorder's upkeep, if it has been started.
pub fn upkeep_thread() -> Option<&'static std::thread::Thread> {
    UPKEEP.get()
}

/// The `status_class` label of an attempt: `2xx` … `5xx`, or `error` without a response.
pub fn status_class(status_code: Option<u16>) -> &'static str {
    match status_code {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::{UPKEEP_THREAD, handle, status_class, upkeep_thread};

    #[test]
    fn installing_the_recorder_starts_its_upkeep_so_unscraped_histograms_stay_bounded() {
        handle();
        let upkeep = upkeep_thread().expect("the upkeep thread was started");
        // The name given at spawn: the OS-level name is set by the thread itself, later.
        assert_eq!(upkeep.name(), Some(UPKEEP_THREAD));
    }

    #[test]
    fn status_classes_group_by_hundreds_and_no_response_is_an_error() {
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(410)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "error");
    }
}
