//! Integration tests: the real api over HTTP against a real, freshly migrated PostgreSQL database.

mod at_rest;
mod auth;
mod cli;
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
mod ordering;
mod outage;
mod overload;
mod refusals;
mod schema_instances;
mod secrets;
mod secure_defaults;
mod security_review;
mod ssrf;
mod test_delivery;
