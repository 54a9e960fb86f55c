//! `webhook_attempts`: one row per outbound HTTP attempt.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: i64,
    /// 1 for the first attempt of the event; keeps counting across manual retries.
    pub attempt: i32,
    /// Headers sent, with signatures redacted.
    #[sea_orm(column_type = "JsonBinary")]
    pub request_headers: Json,
    pub status_code: Option<i32>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub response_headers: Option<Json>,
    /// First 32 KiB of the response body.
    pub response_body: Option<String>,
    pub truncated: bool,
    pub duration_ms: i32,
    /// `timeout`, `connect`, `dns`, `ssrf_blocked`, `http_status`, … when the attempt did not succeed.
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::webhook_events::Entity",
        from = "Column::EventId",
        to = "super::webhook_events::Column::Id",
        on_delete = "Cascade"
    )]
    Event,
}

impl Related<super::webhook_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Event.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
