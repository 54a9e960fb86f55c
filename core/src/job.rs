//! The delivery job payload and its queue.
//!
//! A job carries the ids of the outbound events it delivers: one for a retry or a single
//! fan-out, up to [`MAX_EVENTS_PER_JOB`] for events enqueued together. apalis' own bookkeeping
//! (claim, lock, acknowledge: three updates of its job row) then costs a delivery a fraction of
//! what one job per event costs, which is what lets a replica go past apalis' own no-op rate.

use entity::EventId;
use serde::Deserialize;
use serde_json::{Value, json};

/// apalis queue (job_type) of delivery jobs; explicit so a type rename cannot orphan jobs.
pub const QUEUE: &str = "wirehook.deliveries.v1";

/// Most events one job carries. Small enough that a replica claiming a full batch of jobs
/// does not hoard work another replica could do.
pub const MAX_EVENTS_PER_JOB: usize = 16;

/// A payload that is not a delivery job this worker understands.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not a delivery job: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("delivery job version {0} is unknown to this worker")]
    UnknownVersion(u8),
    #[error("delivery job without event ids")]
    Empty,
}

/// One delivery attempt of each of its outbound events; small, versioned, carries only ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryJob {
    event_ids: Vec<EventId>,
}

/// The stored shape: version 1 (`{"v":1,"event_id":N}`) or 2 (`{"v":2,"event_ids":[…]}`).
#[derive(Deserialize)]
struct Wire {
    v: u8,
    event_id: Option<EventId>,
    #[serde(default)]
    event_ids: Vec<EventId>,
}

impl DeliveryJob {
    /// A job for one event.
    pub fn new(event_id: EventId) -> Self {
        Self {
            event_ids: vec![event_id],
        }
    }

    /// A job for several events; `None` when `event_ids` is empty.
    pub fn batch(event_ids: Vec<EventId>) -> Option<Self> {
        (!event_ids.is_empty()).then_some(Self { event_ids })
    }

    /// The events this job delivers (never empty).
    pub fn event_ids(&self) -> &[EventId] {
        &self.event_ids
    }

    /// The JSON stored in `apalis.jobs.job`: version 1 for one event (readable by every worker
    /// release), version 2 for several.
    pub fn to_payload(&self) -> Value {
        match self.event_ids.as_slice() {
            [one] => json!({"v": 1, "event_id": one}),
            many => json!({"v": 2, "event_ids": many}),
        }
    }

    /// Reads a stored payload of either version.
    pub fn from_payload(payload: Value) -> Result<Self, JobError> {
        let wire: Wire = serde_json::from_value(payload)?;
        let event_ids = match wire.v {
            1 => wire.event_id.into_iter().collect(),
            2 => wire.event_ids,
            other => return Err(JobError::UnknownVersion(other)),
        };
        Self::batch(event_ids).ok_or(JobError::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_event_job_is_stored_as_version_1() {
        assert_eq!(
            DeliveryJob::new(EventId(7)).to_payload(),
            json!({"v": 1, "event_id": 7})
        );
    }

    #[test]
    fn a_several_event_job_is_stored_as_version_2() {
        let job =
            DeliveryJob::batch(vec![EventId(1), EventId(2), EventId(3)]).map(|j| j.to_payload());
        assert_eq!(job, Some(json!({"v": 2, "event_ids": [1, 2, 3]})));
    }

    #[test]
    fn both_versions_read_back() {
        for job in [
            DeliveryJob::new(EventId(9)),
            DeliveryJob::batch(vec![EventId(4), EventId(5)])
                .unwrap_or_else(|| DeliveryJob::new(EventId(0))),
        ] {
            let read = DeliveryJob::from_payload(job.to_payload());
            assert_eq!(read.ok(), Some(job));
        }
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let read = DeliveryJob::from_payload(json!({"v": 3, "event_ids": [1]}));
        assert!(matches!(read, Err(JobError::UnknownVersion(3))));
    }

    #[test]
    fn a_job_without_events_is_refused() {
        for payload in [json!({"v": 2, "event_ids": []}), json!({"v": 1})] {
            assert!(matches!(
                DeliveryJob::from_payload(payload),
                Err(JobError::Empty)
            ));
        }
    }

    #[test]
    fn an_empty_batch_is_no_job() {
        assert_eq!(DeliveryJob::batch(Vec::new()), None);
    }
}
