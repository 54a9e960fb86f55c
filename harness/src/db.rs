//! Throwaway databases on the target PostgreSQL server, migrated by the real `api migrate`.
//!
//! A [`ScratchDb`] is created empty beside the server's admin database (the one in the URL the
//! harness is given), named `<prefix>_<ulid>`, and dropped (with `FORCE`, so leftover
//! connections of killed children do not keep it alive) by [`ScratchDb::drop_now`] or, as a
//! fallback, when the value is dropped.

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

use crate::procs::{Binaries, Binary, Env, ProcError};

/// Why a scratch database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The admin URL is not a URL.
    #[error("the admin database URL is invalid: {0}")]
    BadUrl(#[from] url::ParseError),
    /// The prefix would make an unsafe database name.
    #[error("database name prefix `{0}` must be lowercase letters, digits and `_`")]
    BadPrefix(String),
    /// Talking to PostgreSQL failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// `api migrate` failed.
    #[error("migrating the scratch database: {0}")]
    Migrate(#[from] ProcError),
}

/// A database that exists for one run.
pub struct ScratchDb {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchDb {
    /// Creates an empty database named `<prefix>_<ulid>` on the server of `admin_url`.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self, DbError> {
        let safe = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if prefix.is_empty() || !prefix.chars().all(safe) {
            return Err(DbError::BadPrefix(prefix.to_owned()));
        }
        let name = format!(
            "{prefix}_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(&name);
        let admin = connect(admin_url, 1).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        admin.close().await.ok();
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.into(),
            dropped: false,
        })
    }

    /// Creates a database as [`create`](Self::create) does and applies every migration with
    /// `api migrate`.
    pub async fn create_migrated(
        admin_url: &str,
        prefix: &str,
        binaries: &Binaries,
    ) -> Result<Self, DbError> {
        let db = Self::create(admin_url, prefix).await?;
        db.migrate(binaries).await?;
        Ok(db)
    }

    /// Runs the real `api migrate` against this database.
    pub async fn migrate(&self, binaries: &Binaries) -> Result<(), DbError> {
        let env = Env::new()
            .with("DATABASE_URL", &self.url)
            .with("RUST_LOG", "warn");
        binaries.output(Binary::Api, &["migrate"], &env).await?;
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL (the admin URL with this database's name).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool of at most `max_connections` to this database.
    pub async fn connect(&self, max_connections: u32) -> Result<DatabaseConnection, DbError> {
        Ok(connect(&self.url, max_connections).await?)
    }

    /// Drops the database now, disconnecting whoever is still connected.
    pub async fn drop_now(mut self) -> Result<(), DbError> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await?;
        Ok(())
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot be blocked on: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let _ = drop_database(&admin_url, &name).await;
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), DbErr> {
    let admin = connect(admin_url, 1).await?;
    let result = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
    admin.close().await.ok();
    result.map(|_| ())
}

/// A pool of at most `max_connections` to `url`, without statement logging.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(std::time::Duration::from_secs(5))
        .acquire_timeout(std::time::Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}
