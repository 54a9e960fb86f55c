//! The delivery job payload and its queue.

use serde::{Deserialize, Serialize};

/// apalis queue (job_type) of delivery jobs; explicit so a type rename cannot orphan jobs.
pub const QUEUE: &str = "wirehook.deliveries.v1";

/// One delivery attempt of one outbound event; small, versioned, carries only the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// Payload version.
    pub v: u8,
    /// `webhook_events.id` of the outbound event.
    pub event_id: i64,
}

impl DeliveryJob {
    /// A current-version job for `event_id`.
    pub fn new(event_id: i64) -> Self {
        Self { v: 1, event_id }
    }
}
