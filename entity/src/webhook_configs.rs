//! `webhook_configs`: outbound webhook configurations.

use sea_orm::entity::prelude::*;

use crate::{ConfigStatus, EventTypes, Filters, Headers, Ordering, RetryPolicy};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_configs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub url: String,
    /// Signing secret; never returned by list or details responses.
    pub secret: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub event_types: EventTypes,
    pub status: ConfigStatus,
    #[sea_orm(column_type = "JsonBinary")]
    pub headers: Headers,
    #[sea_orm(column_type = "JsonBinary")]
    pub retry_config: RetryPolicy,
    #[sea_orm(column_type = "JsonBinary")]
    pub filters: Filters,
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTimeUtc>,
    /// The secret replaced by the latest rotation; it still signs until it expires.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    /// Since when every attempt to this endpoint failed; `None` while it is healthy.
    pub failing_since: Option<DateTimeUtc>,
    /// Attempts failed since `failing_since`.
    pub failed_attempts: i32,
    /// While failing, the one attempt in flight holds the endpoint until this time.
    pub probe_until: Option<DateTimeUtc>,
    /// When the configuration was deleted. The row stays (always `inactive`) so that its
    /// events keep their `webhook_config_id`; the API treats it as gone.
    pub deleted_at: Option<DateTimeUtc>,
    /// Ordered delivery per key; `None`: deliveries go in parallel, in no particular order.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub ordering: Option<Ordering>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::webhook_events::Entity")]
    Events,
}

impl Related<super::webhook_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Events.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
