//! Micro-batching: concurrent callers hand single items to one task, which processes whatever
//! has queued up in one call. With 32 deliveries in flight, loading and recording them costs a
//! few database round trips instead of one each.
//!
//! No item waits for company: the task takes what is queued the moment a flush slot is free, so
//! a lone item is flushed at once, and batches only grow while earlier flushes are still running.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

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

/// A running flush's hold on its slot: dropping it frees the slot, then wakes a batch that
/// waits for a flush to end.
struct FlushSlot {
    permit: Option<OwnedSemaphorePermit>,
    ended: Arc<Notify>,
}

impl Drop for FlushSlot {
    fn drop(&mut self) {
        self.permit.take();
        self.ended.notify_waiters();
    }
}

/// Moves queued items into `batch` until it holds `max` or the queue is empty.
fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>, batch: &mut Vec<T>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
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
        Self::spawn_overlapping(max_batch, parallel, 1, flush)
    }

    /// Like [`Batcher::spawn`], but a flush starts while others are still running only once
    /// `min_overlap` items wait for it (or when the others have finished): a lone item still
    /// goes at once, and under load the extra flushes carry full-sized batches instead of
    /// splitting the queue into many small ones.
    pub fn spawn_overlapping<F, Fut>(
        max_batch: usize,
        parallel: usize,
        min_overlap: usize,
        flush: F,
    ) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, sea_orm::DbErr>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending<I, O>>();
        let parallel = parallel.max(1);
        let slots = Arc::new(Semaphore::new(parallel));
        let finished = Arc::new(Notify::new());
        let flush = Arc::new(flush);
        let max_batch = max_batch.max(1);
        let min_overlap = min_overlap.clamp(1, max_batch);
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                drain(&mut rx, &mut batch, max_batch);
                // Other flushes are running: wait for company, or for one of them to end.
                loop {
                    // Registered before the check, so an end in between is not missed.
                    let ended = finished.notified();
                    tokio::pin!(ended);
                    ended.as_mut().enable();
                    let others_running = slots.available_permits() + 1 < parallel;
                    if batch.len() >= min_overlap || !others_running {
                        break;
                    }
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(next) => {
                                batch.push(next);
                                drain(&mut rx, &mut batch, max_batch);
                            }
                            None => break,
                        },
                        () = &mut ended => break,
                    }
                }
                let flush = flush.clone();
                // Frees the slot and wakes a waiting batch when the flush ends, even by a panic.
                let slot = FlushSlot {
                    permit: Some(slot),
                    ended: finished.clone(),
                };
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

/// Writes `items` with one call of `write`; when the database refuses that batch for a reason
/// other than the connection, writes each item alone, so one bad item cannot fail the others.
/// `Err` when the batch failed on the connection (or held one item): the same error for all.
pub async fn together_or_alone<'a, I, O, F, Fut>(
    items: &'a [I],
    what: &str,
    write: F,
) -> Result<Vec<Result<O, sea_orm::DbErr>>, sea_orm::DbErr>
where
    F: Fn(&'a [I]) -> Fut,
    Fut: Future<Output = Result<Vec<O>, sea_orm::DbErr>>,
{
    match write(items).await {
        Ok(all) => Ok(all.into_iter().map(Ok).collect()),
        Err(error) if items.len() == 1 || crate::process::is_connection_error(&error) => Err(error),
        Err(error) => {
            tracing::warn!(%error, items = items.len(), "{what}: batch refused; writing one by one");
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let one = write(std::slice::from_ref(item)).await;
                out.push(one.and_then(|mut o| o.pop().ok_or(sea_orm::DbErr::RecordNotInserted)));
            }
            Ok(out)
        }
    }
}

/// On paused time a sleep ends only once every task is idle, so the order of flushes, arrivals and
/// ends these tests check follows from the code, not from how busy the machine is.
#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
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

    type FlushLog = Arc<Mutex<Vec<(&'static str, usize)>>>;

    /// Spawns a 2-slot overlapping batcher whose flushes take 50 ms and log `("start"|"end",
    /// size)`.
    fn logged_overlapping(min_overlap: usize) -> (Batcher<u32, u32>, FlushLog) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let batcher = Batcher::spawn_overlapping(100, 2, min_overlap, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                let n = items.len();
                seen.lock().map(|mut l| l.push(("start", n))).ok();
                tokio::time::sleep(Duration::from_millis(50)).await;
                seen.lock().map(|mut l| l.push(("end", n))).ok();
                Ok(items)
            }
        });
        (batcher, log)
    }

    async fn one_then_many(batcher: &Batcher<u32, u32>, many: u32) {
        let first = {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(0).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let rest = (1..=many).map(|i| {
            let b = batcher.clone();
            async move { b.call(i).await }
        });
        assert!(
            futures::future::join_all(rest)
                .await
                .iter()
                .all(Result::is_ok)
        );
        assert!(matches!(first.await, Ok(Ok(0))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_batch_waits_for_the_running_flush_instead_of_overlapping_it() {
        let (batcher, log) = logged_overlapping(5);
        one_then_many(&batcher, 3).await;
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        assert_eq!(
            log,
            vec![("start", 1), ("end", 1), ("start", 3), ("end", 3)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_enough_batch_overlaps_the_running_flush() {
        let (batcher, log) = logged_overlapping(5);
        one_then_many(&batcher, 6).await;
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        assert_eq!(
            log,
            vec![("start", 1), ("start", 6), ("end", 1), ("end", 6)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_that_panics_still_lets_the_waiting_batch_go() {
        let batcher = Batcher::spawn_overlapping(100, 2, 5, |items: Vec<u32>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!items.contains(&0), "item 0 makes the flush panic");
            Ok(items)
        });
        let first = {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(0).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let rest = (1..=3).map(|i| {
            let b = batcher.clone();
            async move { b.call(i).await }
        });
        let rest = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(rest))
            .await
            .expect("the waiting batch was flushed");
        assert!(rest.iter().all(Result::is_ok));
        assert!(matches!(first.await, Ok(Err(BatchError::Stopped))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_flush_fails_every_item_of_its_batch() {
        let batcher = Batcher::spawn(8, 1, |_: Vec<u32>| async move {
            Err::<Vec<u32>, _>(sea_orm::DbErr::Custom("boom".into()))
        });
        let err = batcher.call(1).await.err();
        assert!(matches!(err, Some(BatchError::Failed(e)) if e.to_string().contains("boom")));
    }
}
