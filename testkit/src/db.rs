//! Throwaway databases: one per test (or benchmark scenario, or chaos run), so that runs never
//! see each other's rows and can run in parallel on one server.
//!
//! A [`TestDb`] is created empty beside the server's admin database (the one in the URL it is
//! given), named `<prefix>_<ulid>`, and dropped `WITH (FORCE)` — so the leftover connections of
//! replicas, apps or killed children do not keep it alive — by [`TestDb::drop_now`] or, as a
//! fallback, when the value is dropped. A database on a throwaway [`Cluster`](crate::cluster)
//! can be left to go away with its server instead ([`TestDb::keep_on_drop`]).
//!
//! Migrating is up to the caller: in-process ([`TestDb::connect_migrated`]) for tests, or by
//! the real `api migrate` for the harness, which runs the binaries as an operator would.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

/// The variable naming the server tests create their databases on.
pub const ADMIN_URL_VAR: &str = "DATABASE_URL";

/// Why a throwaway database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// [`ADMIN_URL_VAR`] is not set.
    #[error("DATABASE_URL must point at a PostgreSQL server; run the tests with `just test`")]
    NoAdminUrl,
    /// The admin URL is not a URL.
    #[error("the admin database URL is invalid: {0}")]
    BadUrl(#[from] url::ParseError),
    /// The prefix would make an unsafe database name.
    #[error("database name prefix `{0}` must be lowercase letters, digits and `_`")]
    BadPrefix(String),
    /// Talking to PostgreSQL (or migrating) failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

/// A database that exists for one test or run.
pub struct TestDb {
    admin_url: String,
    name: String,
    url: String,
    /// False once dropped by [`drop_now`](Self::drop_now), or when left to its server.
    drop_on_exit: bool,
}

impl TestDb {
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
            drop_on_exit: true,
        })
    }

    /// Creates an empty database as [`create`](Self::create) does, on the server named by
    /// `DATABASE_URL` (the tests' server).
    pub async fn from_env(prefix: &str) -> Result<Self, DbError> {
        let admin_url = std::env::var(ADMIN_URL_VAR).map_err(|_| DbError::NoAdminUrl)?;
        Self::create(&admin_url, prefix).await
    }

    /// Leaves the database to its server when dropped: on a throwaway cluster, which goes away
    /// with its test and may be down by then, a `DROP DATABASE` would only wait and fail.
    pub fn keep_on_drop(mut self) -> Self {
        self.drop_on_exit = false;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL (the admin URL with this database's name).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of the server's admin database it was created from.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// A pool of at most `max_connections` to this database, as [`connect`] makes it.
    pub async fn connect(&self, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
        connect(&self.url, max_connections).await
    }

    /// [`connect`](Self::connect), then applies every migration in-process: the tables, their
    /// triggers and apalis' schema, as `api migrate` leaves them.
    pub async fn connect_migrated(
        &self,
        max_connections: u32,
    ) -> Result<DatabaseConnection, DbError> {
        let db = self.connect(max_connections).await?;
        migration::migrate(&db).await?;
        Ok(db)
    }

    /// Drops the database now, disconnecting whoever is still connected.
    pub async fn drop_now(mut self) -> Result<(), DbError> {
        self.drop_on_exit = false;
        drop_database(&self.admin_url, &self.name).await?;
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.drop_on_exit {
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

/// A pool of at most `max_connections` to `url`, without statement logging (a test's or a
/// benchmark's own queries are not what its logs are for).
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}
