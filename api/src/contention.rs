//! Transactions that PostgreSQL aborted for a deadlock or a serialization failure run again,
//! so a client never sees a concurrency error it could not have caused.
//!
//! Locks are taken in one order everywhere (configuration row first, then its events by id), so
//! these aborts should not happen; this is the guard for the ones that still do.

use std::future::Future;
use std::time::Duration;

use crate::error::ApiError;

/// Runs of one transaction before [`ApiError::Contention`] (503) reaches the client.
const ATTEMPTS: u32 = 5;

/// Runs `transaction` until it ends other than by [`ApiError::Contention`], at most
/// [`ATTEMPTS`] times, with a short randomized pause between runs.
pub async fn retrying<T, F, Fut>(mut transaction: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut run = 1;
    loop {
        match transaction().await {
            Err(ApiError::Contention) if run < ATTEMPTS => {
                metrics::counter!(crate::metrics::TRANSACTION_RETRIES_TOTAL).increment(1);
                let pause = rand::random_range(5..=20) * u64::from(run);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                run += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_transaction_aborted_by_contention_runs_again() {
        let runs = AtomicU32::new(0);
        let result = retrying(|| async {
            match runs.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(ApiError::Contention),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(result.ok(), Some("done"));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let runs = AtomicU32::new(0);
        let result: Result<(), _> = retrying(|| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::Validation("bad".into()))
        })
        .await;
        assert!(matches!(result, Err(ApiError::Validation(_))));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn contention_that_persists_ends_as_contention_after_the_last_run() {
        let runs = AtomicU32::new(0);
        let result: Result<(), _> = retrying(|| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::Contention)
        })
        .await;
        assert!(matches!(result, Err(ApiError::Contention)));
        assert_eq!(runs.load(Ordering::SeqCst), ATTEMPTS);
    }
}
