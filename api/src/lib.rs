//! The wirehook api: configuration and history REST API, inbound provider webhooks, OpenAPI.

pub mod allowed_methods;
pub mod app;
pub mod auth;
pub mod config;
pub mod connections;
pub mod console;
pub mod contention;
pub mod documented_header;
pub mod domain;
pub mod error;
pub mod history;
pub mod inbound;
pub mod ingest;
pub mod ingest_limit;
pub mod json_input;
pub mod metrics;
pub mod openapi_doc;
pub mod overload;
pub mod raw_body;
pub mod read_replica;
pub mod refusals;
pub mod response_headers;
pub mod routes;

pub use app::{App, openapi_service};
pub use config::ApiConfig;
