//! Runs the real wirehook binaries against a real PostgreSQL and real HTTP receivers on
//! 127.0.0.1, for the benchmark (`just bench`, [`bench`]) and for other whole-system harnesses.
//!
//! The fault-injection run (`just chaos`) is [`chaos`].
//!
//! The building blocks are independent of the benchmark:
//! - [`procs`]: start `api` and `worker` release binaries with an environment, wait until they
//!   are ready, stop, kill or restart them, read their peak memory;
//! - [`receiver`]: an in-process HTTP receiver that records every delivery per `webhook-id`,
//!   verifies Standard Webhooks signatures and answers as a pluggable [`receiver::Behaviour`]
//!   says (always 200 for the benchmark; errors, hangs or dropped connections for fault runs);
//! - [`cluster`]: a throwaway PostgreSQL cluster of its own, to stop, crash and restart;
//! - [`db`]: throwaway databases on the target server, migrated by the real `api migrate`;
//! - [`rest`]: the api's REST API as an operator uses it (token, configurations, history);
//! - [`load`]: signed provider requests and load generators (closed loop and paced);
//! - [`stats`]: percentiles and rates.

pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod db;
pub mod load;
pub mod procs;
pub mod receiver;
pub mod rest;
pub mod stats;
