//! Prometheus exposition for `/metrics`: the recorder shared with the worker library.

pub use wirehook_worker::metrics::handle;
