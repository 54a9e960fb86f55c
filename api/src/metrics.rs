//! Prometheus exposition for `/metrics`: the recorder shared with the worker library.

pub use wirehook_core::metrics::handle;

/// Counter: api transactions run again after PostgreSQL aborted them for a deadlock or a
/// serialization failure (see `contention::retrying`).
pub const TRANSACTION_RETRIES_TOTAL: &str = "wirehook_api_transaction_retries_total";
