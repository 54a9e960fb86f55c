//! Runs the real wirehook binaries against a real PostgreSQL and real HTTP receivers on
//! 127.0.0.1, for the benchmark (`just bench`, [`bench`]) and for other whole-system harnesses.
//!
//! The fault-injection run (`just chaos`) is [`chaos`].
//!
//! The throwaway databases and PostgreSQL clusters and the HTTP receiver are the test kit's
//! ([`wirehook_testkit`]), shared with the test suites. The building blocks of its own are
//! independent of the benchmark:
//! - [`procs`]: start `api` and `worker` release binaries with an environment, wait until they
//!   are ready, stop, kill or restart them, read their peak memory; migrate a database with
//!   the real `api migrate`;
//! - [`rest`]: the api's REST API as an operator uses it (token, configurations, history);
//! - [`load`]: signed provider requests and load generators (closed loop and paced);
//! - [`stats`]: percentiles and rates;
//! - [`wire`]: one hand-driven keep-alive connection, for generators that time from the write.

pub mod bench;
pub mod chaos;
pub mod load;
pub mod procs;
pub mod rest;
pub mod soak;
pub mod stats;
pub mod wire;
