//! `api`: serve the HTTP API, apply migrations, issue tokens, print the OpenAPI document.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use wirehook_api::config::{ApiConfig, JwtConfig};
use wirehook_api::{App, auth};
use wirehook_core::{process, secrets, settings};

/// Connections of the pool on `DATABASE_URL` (and of the read pool on `DATABASE_READ_URL`):
/// above the `/api/` requests served at once (`MAX_API_IN_FLIGHT`'s default is 64, most of them
/// short) plus the group commits; the README's Scaling section counts them against the
/// primary's `max_connections`.
const POOL: u32 = 32;

/// Rows read per batch when `api serve` encrypts plain-text secrets at start.
const REENCRYPT_BATCH: u32 = 500;

/// mimalloc instead of glibc malloc: the request and delivery paths allocate many small
/// short-lived buffers across threads, where glibc's allocator cost about a quarter of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "api",
    version,
    about = "wirehook api: webhook configuration, history and inbound provider webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply all migrations (tables and the apalis job storage); safe to run concurrently.
    Migrate,
    /// Print a JWT for the REST API, signed with JWT_SECRET.
    Token {
        /// Subject (who the token is for).
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Rewrite every configuration's signing secrets with the newest WIREHOOK_ENCRYPTION_KEY
    /// (the first listed), in batches; prints how many rows were rewritten. Run it after adding
    /// a key, before removing the old one.
    Reencrypt {
        /// Rows read per batch.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
    },
    /// Delete events in a final state older than the given age (with their attempts), in
    /// batches of 1,000; prints how many. Pending events are never deleted.
    Purge {
        /// Age, e.g. 30d, 12h.
        #[arg(long)]
        older_than: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command.unwrap_or(Command::Serve)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("api: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Openapi => {
            println!("{}", wirehook_api::app::openapi_spec());
            Ok(())
        }
        Command::Token { sub, ttl } => {
            let jwt = JwtConfig::from_env(&settings::process()).map_err(|e| e.to_string())?;
            let ttl = auth::parse_ttl(&ttl).map_err(|e| format!("--ttl {e}"))?;
            let token = auth::issue_token(&jwt, &sub, ttl)
                .map_err(|e| format!("cannot sign token: {e}"))?;
            println!("{token}");
            Ok(())
        }
        Command::Purge { older_than } => {
            let age = auth::parse_ttl(&older_than).map_err(|e| format!("--older-than {e}"))?;
            let url = settings::database_url(&settings::process()).map_err(|e| e.to_string())?;
            let db = process::connect(url.expose_secret(), 4).await?;
            let purged = wirehook_core::retention::purge(&db, age)
                .await
                .map_err(|e| format!("purge failed: {e}"))?;
            println!("{}", purged.events);
            Ok(())
        }
        Command::Reencrypt { batch } => {
            process::init_tracing();
            let common = settings::Common::read(&settings::process()).map_err(|e| e.to_string())?;
            let db = process::connect(common.database_url.expose_secret(), 4).await?;
            let done =
                secrets::reencrypt(&db, &common.keyring, secrets::Scope::NotNewestKey, batch)
                    .await
                    .map_err(|e| format!("reencrypt failed: {e}"))?;
            tracing::info!(
                rewritten = done.rewritten,
                changed_meanwhile = done.skipped,
                key_id = common.keyring.newest_id(),
                "secrets re-encrypted with the newest key"
            );
            println!("{}", done.rewritten);
            Ok(())
        }
        Command::Migrate => {
            process::init_tracing();
            let url = settings::database_url(&settings::process()).map_err(|e| e.to_string())?;
            let db = process::connect(url.expose_secret(), 32).await?;
            migration::migrate(&db)
                .await
                .map_err(|e| format!("migration failed: {e}"))?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            process::init_tracing();
            let cfg = ApiConfig::from_env(&settings::process()).map_err(|e| e.to_string())?;
            let db = process::connect(cfg.common.database_url.expose_secret(), POOL).await?;
            let pending = migration::pending(&db)
                .await
                .map_err(|e| format!("cannot read migrations: {e}"))?;
            if !pending.is_empty() {
                return Err(format!(
                    "{} migration(s) pending ({}); run `api migrate` first",
                    pending.len(),
                    pending.join(", ")
                ));
            }
            // Once it is clear the api will run, so that a refusal to start stays one line.
            cfg.common.log_mode("api");
            // Rows from before secrets were encrypted: encrypted here, on the first start.
            let encrypted = secrets::reencrypt(
                &db,
                &cfg.common.keyring,
                secrets::Scope::PlainText,
                REENCRYPT_BATCH,
            )
            .await
            .map_err(|e| format!("cannot encrypt plain-text secrets: {e}"))?;
            if encrypted.rewritten > 0 {
                tracing::info!(
                    rows = encrypted.rewritten,
                    "plain-text signing secrets encrypted"
                );
            }
            // Only the first requests' speed depends on it: a failure is no reason not to serve.
            if let Err(error) = wirehook_api::ingest::warm_up(&db).await {
                tracing::warn!(%error, "could not run the ingest statements ahead of the first requests");
            }
            let (acceptor, addr) = wirehook_api::app::bind(cfg.api_addr)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", cfg.api_addr))?;
            tracing::info!(%addr, "api listening");
            let delivery = cfg.common.client_config();
            let mut app = App::new(db, &cfg.jwt, delivery, cfg.common.keyring, cfg.inbound)
                .map_err(|e| e.to_string())?
                .with_limits(cfg.limits);
            if let Some(replica) = cfg.read_replica {
                // Lazily: a standby that is down at start is no reason not to serve, the lists
                // go to the primary until it answers (`read_replica`).
                let standby = process::connect_lazy(
                    replica.url.expose_secret(),
                    POOL,
                    wirehook_api::read_replica::APPLICATION_NAME,
                )
                .await
                .map_err(|e| format!("DATABASE_READ_URL: {e}"))?;
                tracing::info!(
                    max_lag_secs = replica.max_lag.as_secs(),
                    "history lists read from DATABASE_READ_URL"
                );
                app = app.with_read_replica(standby, replica.max_lag);
            }
            app.serve(acceptor, process::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
    }
}
