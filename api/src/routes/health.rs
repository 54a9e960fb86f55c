//! `/healthz`, `/readyz`, `/metrics`.

use metrics_exporter_prometheus::PrometheusHandle;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::ApiTags;

/// Liveness or readiness result.
#[derive(Debug, Object)]
pub struct HealthStatus {
    /// `ok`, or what is not ready.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database is reachable and migrated.
    #[oai(status = 200)]
    Ready(Json<HealthStatus>),
    /// Not ready; `status` says why.
    #[oai(status = 503)]
    NotReady(Json<HealthStatus>),
}

/// Operational endpoints (no authentication).
pub struct HealthApi {
    pub db: DatabaseConnection,
    pub metrics: PrometheusHandle,
}

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Liveness: the process is up
    #[oai(path = "/healthz", method = "get", operation_id = "ops.health")]
    async fn health(&self) -> Json<HealthStatus> {
        Json(HealthStatus {
            status: "ok".into(),
        })
    }

    /// Readiness: the database answers and every migration is applied
    #[oai(path = "/readyz", method = "get", operation_id = "ops.ready")]
    async fn ready(&self) -> ReadyResponse {
        let check = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            self.db.execute_unprepared("SELECT 1").await?;
            migration::pending(&self.db).await
        })
        .await;
        let not_ready = |s: &str| ReadyResponse::NotReady(Json(HealthStatus { status: s.into() }));
        match check {
            Ok(Ok(pending)) if pending.is_empty() => ReadyResponse::Ready(Json(HealthStatus {
                status: "ok".into(),
            })),
            Ok(Ok(pending)) => not_ready(&format!(
                "{} migration(s) pending; run `api migrate`",
                pending.len()
            )),
            Ok(Err(_)) | Err(_) => not_ready("database unreachable"),
        }
    }

    /// Prometheus metrics
    #[oai(path = "/metrics", method = "get", operation_id = "ops.metrics")]
    async fn metrics(&self) -> PlainText<String> {
        PlainText(self.metrics.render())
    }
}
