//! Settings, read once from the environment and validated at start. One reader ([`Env`]) for
//! every variable of both binaries, one shared part ([`Common`]), and each binary's own struct
//! on top of it ([`WorkerSettings`] here; the api's `ApiConfig` in the api crate).

mod common;
mod env;
mod worker;

pub use common::{Common, Environment, database_url, optional_database_url};
pub use env::{Env, SettingsError, invalid, process};
pub use worker::{WorkerSettings, default_worker_name};
