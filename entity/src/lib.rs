//! sea-orm entities and the enums shared by the wirehook api and worker.

pub mod enums;
pub mod ids;
pub mod json;
pub mod webhook_attempts;
pub mod webhook_configs;
pub mod webhook_events;

pub use enums::{ConfigStatus, Direction, EventStatus, EventType, Source, UnknownEventType};
pub use ids::{ConfigId, EventId, MessageId};
pub use json::{
    EventTypes, Filters, Headers, MAX_ORDERING_KEY_BYTES, OnStuck, Ordering, ResponseData,
    RetryPolicy,
};
