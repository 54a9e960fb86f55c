//! What the wirehook api and worker share: the delivery engine (one attempt, recorded), the
//! queue (every statement on `apalis.*`), signing, retry schedules, settings, retention and the
//! process plumbing (logging, pools, metrics recorder).

pub mod attempt;
pub mod batch;
pub mod engine;
pub mod http_client;
pub mod job;
pub mod metrics;
pub mod partitions;
pub mod process;
pub mod queue;
pub mod retention;
pub mod retry;
pub mod secrets;
pub mod settings;
pub mod signing;
pub mod store;
