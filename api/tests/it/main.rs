//! Integration tests: the real api over HTTP against a real, freshly migrated PostgreSQL database.

mod auth;
mod cli;
#[allow(dead_code)]
#[path = "../../../harness/src/cluster.rs"]
mod cluster;
mod common;
mod concurrency;
mod configs;
mod console;
mod delivery;
mod errors;
mod events;
mod hostile;
mod inbound;
mod ingest_group;
mod migrate;
mod openapi;
mod operations;
mod outage;
mod receiver;
mod schema_instances;
mod secrets;
mod ssrf;
mod test_delivery;
