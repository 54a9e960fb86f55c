//! The common set-up of the scenarios that run the binaries: a fresh migrated database, a
//! receiver, the real api, and configurations pointing at the receiver (one path each, with
//! its secret registered so every delivery's signature is checked).

use std::time::Duration;

use wirehook_testkit::db::TestDb;
use wirehook_testkit::receiver::{Keep, Receiver, Route};

use super::{BenchResult, Context, DB_PREFIX};
use crate::procs::{Proc, ProcSpec, free_local_addr};
use crate::rest::{ApiClient, NewConfig};

/// How long a stopped process may take to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A configuration the stage created.
#[derive(Debug, Clone)]
pub struct StagedConfig {
    /// Its id.
    pub id: i64,
    /// The receiver path it delivers to.
    pub path: String,
}

/// Database, receiver, api and configurations of one scenario.
pub struct Stage {
    /// The scenario's database.
    pub db: TestDb,
    /// Where deliveries arrive.
    pub receiver: Receiver,
    /// The api process.
    pub api: Proc,
    /// An authorized client of it.
    pub client: ApiClient,
    /// The configurations, in creation order.
    pub configs: Vec<StagedConfig>,
    name: String,
}

impl Stage {
    /// Sets up `name` with `configs` active configurations subscribed to `call.completed`.
    pub async fn new(ctx: &Context, name: &str, configs: usize) -> BenchResult<Self> {
        Self::with_keep(ctx, name, configs, Keep::Counts).await
    }

    /// [`new`](Self::new) with a receiver that keeps what `keep` says.
    pub async fn with_keep(
        ctx: &Context,
        name: &str,
        configs: usize,
        keep: Keep,
    ) -> BenchResult<Self> {
        let db = TestDb::create(&ctx.admin_url, DB_PREFIX).await?;
        ctx.binaries.migrate(db.url()).await?;
        let receiver = Receiver::start(keep).await?;
        let addr = free_local_addr()?;
        let spec = ProcSpec::api(
            &format!("{name}-api"),
            db.url(),
            addr,
            &ctx.api_env(),
            &ctx.log_dir,
        );
        let api = Proc::start(&ctx.binaries, spec).await?;
        let client = ApiClient::new(&ctx.binaries, addr, super::JWT_SECRET).await?;
        let mut staged = Vec::with_capacity(configs);
        for i in 0..configs {
            let path = format!("/c/{i}");
            let config = NewConfig::new(
                &format!("bench {name} {i}"),
                &receiver.url(&path),
                &["call.completed"],
            );
            receiver.set_route(&path, Route::ok().signed_with(&config.secret)?);
            let id = client.create_config(&config).await?;
            staged.push(StagedConfig { id, path });
        }
        Ok(Self {
            db,
            receiver,
            api,
            client,
            configs: staged,
            name: name.to_owned(),
        })
    }

    /// Starts `n` worker replicas at once and waits until all are ready.
    pub async fn start_workers(&self, ctx: &Context, n: usize) -> BenchResult<Vec<Proc>> {
        let starts = (0..n).map(|i| {
            let spec = ProcSpec::worker(
                &format!("{}-worker-{i}", self.name),
                self.db.url(),
                free_local_addr()?,
                &ctx.worker_env(),
                &ctx.log_dir,
            );
            Ok::<_, std::io::Error>(Proc::start(&ctx.binaries, spec))
        });
        let starts = starts.collect::<Result<Vec<_>, _>>()?;
        Ok(futures::future::try_join_all(starts).await?)
    }

    /// Stops the api (SIGTERM); [`finish`](Self::finish) then only drops the database.
    pub async fn stop_api(&mut self) -> BenchResult<()> {
        self.api.terminate(STOP_GRACE).await?;
        Ok(())
    }

    /// Stops the api (SIGTERM) if it still runs and drops the database.
    pub async fn finish(mut self) -> BenchResult<()> {
        self.api.terminate(STOP_GRACE).await?;
        self.db.drop_now().await?;
        Ok(())
    }
}

/// Stops `workers` with SIGTERM, returning the largest peak RSS among them (KiB).
pub async fn stop_workers(workers: &mut [Proc]) -> BenchResult<u64> {
    let mut peak = 0;
    for worker in workers.iter_mut() {
        peak = peak.max(worker.peak_rss_kib().unwrap_or(0));
    }
    for worker in workers.iter_mut() {
        worker.terminate(STOP_GRACE).await?;
    }
    Ok(peak)
}
