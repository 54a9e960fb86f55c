//! Micro-batching: concurrent callers hand single items to one task, which processes whatever
//! has queued up in one call. With 32 deliveries in flight, loading and recording them costs a
//! few database round trips instead of one each.
//!
//! No item waits for company: the task takes what is queued the moment a flush slot is free, so
//! a lone item is flushed at once, and batches only grow while earlier flushes are still running.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Why a batched call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The flush that held the item failed; every item of that batch gets this error.
    #[error("{0}")]
    Failed(Arc<sea_orm::DbErr>),
    /// The batcher's task is gone (the engine is shutting down).
    #[error("the batcher stopped")]
    Stopped,
}

struct Pending<I, O> {
    item: I,
    reply: oneshot::Sender<Result<O, BatchError>>,
}

/// A handle to a batching task; cheap to clone. The task ends when the last handle is dropped.
pub struct Batcher<I, O> {
    tx: mpsc::UnboundedSender<Pending<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Spawns the task: up to `parallel` flushes at once, each of at most `max_batch` items.
    ///
    /// `flush` must return one output per input, in input order.
    pub fn spawn<F, Fut>(max_batch: usize, parallel: usize, flush: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, sea_orm::DbErr>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending<I, O>>();
        let slots = Arc::new(Semaphore::new(parallel.max(1)));
        let flush = Arc::new(flush);
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let flush = flush.clone();
                tokio::spawn(async move {
                    let (items, replies): (Vec<I>, Vec<_>) =
                        batch.into_iter().map(|p| (p.item, p.reply)).unzip();
                    let expected = replies.len();
                    match flush(items).await {
                        Ok(outputs) if outputs.len() == expected => {
                            for (reply, output) in replies.into_iter().zip(outputs) {
                                let _ = reply.send(Ok(output));
                            }
                        }
                        Ok(outputs) => {
                            let error = Arc::new(sea_orm::DbErr::Custom(format!(
                                "batch flush returned {} results for {expected} items",
                                outputs.len()
                            )));
                            for reply in replies {
                                let _ = reply.send(Err(BatchError::Failed(error.clone())));
                            }
                        }
                        Err(error) => {
                            let error = Arc::new(error);
                            for reply in replies {
                                let _ = reply.send(Err(BatchError::Failed(error.clone())));
                            }
                        }
                    }
                    drop(slot);
                });
            }
        });
        Self { tx }
    }

    /// Queues `item` for the next flush and waits for its output.
    pub async fn call(&self, item: I) -> Result<O, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { item, reply })
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn each_caller_gets_the_output_of_its_own_item() {
        let batcher = Batcher::spawn(8, 1, |items: Vec<u32>| async move {
            Ok(items.into_iter().map(|i| i * 10).collect())
        });
        let calls = (0..50).map(|i| {
            let b = batcher.clone();
            async move { (i, b.call(i).await) }
        });
        for (i, out) in futures::future::join_all(calls).await {
            assert_eq!(out.ok(), Some(i * 10));
        }
    }

    #[tokio::test]
    async fn items_queued_during_a_flush_go_together_into_the_next_one() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::spawn(100, 1, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock().map(|mut s| s.push(items.len())).ok();
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(items)
            }
        });
        let first = {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(0).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let rest = (1..=20).map(|i| {
            let b = batcher.clone();
            async move { b.call(i).await }
        });
        let outs = futures::future::join_all(rest).await;
        assert!(outs.iter().all(Result::is_ok));
        assert!(matches!(first.await, Ok(Ok(0))));
        let sizes = sizes.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(sizes, vec![1, 20]);
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_its_maximum() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::spawn(4, 1, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock().map(|mut s| s.push(items.len())).ok();
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(items)
            }
        });
        let calls = (0..30).map(|i| {
            let b = batcher.clone();
            async move { b.call(i).await }
        });
        assert!(
            futures::future::join_all(calls)
                .await
                .iter()
                .all(Result::is_ok)
        );
        let sizes = sizes.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(sizes.iter().sum::<usize>(), 30);
        assert!(sizes.iter().all(|n| *n <= 4), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_item_of_its_batch() {
        let batcher = Batcher::spawn(8, 1, |_: Vec<u32>| async move {
            Err::<Vec<u32>, _>(sea_orm::DbErr::Custom("boom".into()))
        });
        let err = batcher.call(1).await.err();
        assert!(matches!(err, Some(BatchError::Failed(e)) if e.to_string().contains("boom")));
    }
}
