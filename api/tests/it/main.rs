//! Integration tests: the real api over HTTP against a real, freshly migrated PostgreSQL database.

mod auth;
mod cli;
mod common;
mod configs;
mod delivery;
mod errors;
mod events;
mod inbound;
mod migrate;
mod openapi;
mod operations;
mod receiver;
mod test_delivery;
