//! `/api/webhooks/config/{id}/…`: operations on one configuration beyond CRUD, secret rotation
//! and bulk recovery.

use chrono::{DateTime, Utc};
use entity::{ConfigStatus, webhook_configs};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, DatabaseConnection, IntoActiveModel, Set, TransactionTrait,
};
use wirehook_core::queue;
use wirehook_core::secrets::Keyring;

use super::super::ApiTags;
use super::{ConfigCreatedOut, ConfigOut, find_config, lock_config};
use crate::auth::BearerAuth;
use crate::contention::retrying;
use crate::domain;
use crate::error::{ApiError, ApiResult};
use crate::json_input::{JsonBody, Text};

/// Default overlap of a rotation: one day.
const DEFAULT_OVERLAP_SECS: u32 = 86_400;

/// Failed events re-queued per transaction by recovery.
const RECOVER_BATCH: u32 = 500;

/// Body of `POST /api/webhooks/config/{id}/rotate-secret`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateIn {
    /// The new secret (`whsec_` + base64, or plain base64); generated when omitted.
    pub secret: Option<Text>,
    /// Seconds during which the old secret still signs, beside the new one (0–604800,
    /// default 86400). 0 drops the old secret at once.
    #[oai(validator(maximum(value = "604800")))]
    pub overlap_seconds: Option<u32>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RotateResponse {
    pub success: bool,
    pub message: String,
    /// The configuration with its new secret, shown this once.
    pub webhook: ConfigCreatedOut,
}

/// Body of `POST /api/webhooks/config/{id}/recover`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverIn {
    /// Start of the window (ISO 8601): failed events created at or after this time.
    pub since: DateTime<Utc>,
    /// End of the window (ISO 8601, default now).
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RecoverResponse {
    pub success: bool,
    pub message: String,
    /// Failed events queued for delivery again.
    pub count: u64,
}

#[derive(ApiResponse)]
pub enum Recovered {
    /// The failed events in the window are queued again; workers deliver them.
    #[oai(status = 202)]
    Accepted(Json<RecoverResponse>),
}

/// Secret rotation and recovery handlers.
pub struct ConfigOpsApi {
    pub db: DatabaseConnection,
    /// Opens the current secret and encrypts the new one.
    pub keyring: std::sync::Arc<Keyring>,
}

#[OpenApi(prefix_path = "/api/webhooks/config", tag = "ApiTags::Configs")]
impl ConfigOpsApi {
    /// Rotate a configuration's signing secret
    ///
    /// Replaces the secret (generated when not given) and shows it this once. For
    /// `overlapSeconds` (default one day) every delivery carries two Standard Webhooks
    /// signatures, `v1,<new> v1,<old>`, so receivers can switch secrets without losing a
    /// delivery; then only the new one. Rotating again during an overlap makes the current
    /// secret the old one.
    #[oai(
        path = "/:id/rotate-secret",
        method = "post",
        operation_id = "configs.rotateSecret"
    )]
    async fn rotate_secret(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
        body: JsonBody<RotateIn>,
    ) -> ApiResult<Json<RotateResponse>> {
        let body = body.0;
        let secret = domain::secret(body.secret.map(Text::into_inner))?;
        let overlap = body.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECS);
        let model = retrying(|| self.rotate_once(id.0, &secret, overlap)).await?;
        tracing::info!(
            config_id = id.0,
            overlap_secs = overlap,
            "signing secret rotated"
        );
        Ok(Json(RotateResponse {
            success: true,
            message: if overlap == 0 {
                "Secret rotated; the old secret no longer signs".into()
            } else {
                format!("Secret rotated; the old secret also signs for {overlap} more seconds")
            },
            webhook: ConfigCreatedOut {
                config: ConfigOut::from(model),
                secret,
            },
        }))
    }

    /// Re-deliver a configuration's failed events
    ///
    /// Queues again every `failed` outbound event of this configuration created in
    /// `[since, until]` (each keeps its message id and attempt count, with a new retry series).
    /// The configuration must be `active`.
    #[oai(
        path = "/:id/recover",
        method = "post",
        operation_id = "configs.recover"
    )]
    async fn recover(
        &self,
        _auth: BearerAuth,
        id: Path<i64>,
        body: JsonBody<RecoverIn>,
    ) -> ApiResult<Recovered> {
        let now = Utc::now();
        let since = body.0.since;
        let until = body.0.until.unwrap_or(now);
        if since > now {
            return Err(ApiError::Validation("`since` is in the future".into()).into());
        }
        if since > until {
            return Err(ApiError::Validation("`since` is after `until`".into()).into());
        }
        let config = find_config(&self.db, id.0).await?;
        if config.status != ConfigStatus::Active {
            return Err(ApiError::Conflict(format!(
                "the configuration is {}; activate it before recovering its deliveries",
                config.status.to_value()
            ))
            .into());
        }
        let mut count = 0u64;
        loop {
            let txn = self.db.begin().await?;
            let ids = queue::requeue_failed(
                &txn,
                entity::ConfigId(config.id),
                since,
                until,
                RECOVER_BATCH,
            )
            .await?;
            txn.commit().await?;
            count += ids.len() as u64;
            if ids.len() < RECOVER_BATCH as usize {
                break;
            }
        }
        tracing::info!(config_id = id.0, count, "failed deliveries recovered");
        Ok(Recovered::Accepted(Json(RecoverResponse {
            success: true,
            message: format!("{count} failed deliveries queued again"),
            count,
        })))
    }
}

impl ConfigOpsApi {
    /// One run of a rotation: `secret` becomes current, the old one signs for `overlap` seconds.
    async fn rotate_once(
        &self,
        id: i64,
        secret: &str,
        overlap: u32,
    ) -> Result<webhook_configs::Model, ApiError> {
        let txn = self.db.begin().await?;
        let current = lock_config(&txn, id).await?;
        let old = self.keyring.decrypt(&current.secret).map_err(|e| {
            ApiError::Conflict(format!(
                "{e}; replace the secret with `PUT /api/webhooks/config/{id}` instead"
            ))
        })?;
        if domain::same_secret(&old, secret) {
            return Err(ApiError::Validation(
                "`secret` must differ from the current secret".into(),
            ));
        }
        let now = Utc::now();
        let mut row = current.into_active_model();
        row.secret = Set(self.keyring.encrypt(secret));
        if overlap == 0 {
            row.previous_secret = Set(None);
            row.previous_secret_expires_at = Set(None);
        } else {
            row.previous_secret = Set(Some(self.keyring.encrypt(&old)));
            row.previous_secret_expires_at =
                Set(Some(now + chrono::Duration::seconds(i64::from(overlap))));
        }
        row.updated_at = Set(now);
        let model = row.update(&txn).await?;
        txn.commit().await?;
        Ok(model)
    }
}
