//! `webhook_events`: every event received or sent.

use sea_orm::entity::prelude::*;

use crate::{Direction, EventStatus, ResponseData, Source};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Public message id (`msg_…`), stable across retries, sent as `webhook-id`.
    #[sea_orm(unique)]
    pub message_id: String,
    pub direction: Direction,
    pub source: Source,
    /// A catalog event type, or the provider's own name for an ignored inbound event.
    pub event_type: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    pub status: EventStatus,
    pub attempts: i32,
    /// Attempts made before the current retry series began (a manual retry starts a new one).
    pub attempt_base: i32,
    pub webhook_config_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub response_data: Option<ResponseData>,
    /// The inbound or published event an outbound delivery came from.
    pub parent_event_id: Option<i64>,
    /// Provider event identity or idempotency key, unique per source.
    pub dedupe_key: Option<String>,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    /// Inbound from a provider: what it sent; rejected requests: a bounded copy of the body.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub provider_payload: Option<Json>,
    /// Inbound: the client address (the socket peer, or the address a trusted proxy forwarded).
    pub client_ip: Option<String>,
    /// Ordered deliveries: the key value this event is ordered under.
    pub ordering_key: Option<String>,
    /// Ordered deliveries: the event's place in its key, from 1, in accept order.
    pub ordering_seq: Option<i64>,
    /// Ordered deliveries: the message id of the event before it in its key.
    pub ordering_previous: Option<String>,
    /// Pending behind its key's head, with no job: released when the head settles.
    pub waiting_on_key: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::webhook_configs::Entity",
        from = "Column::WebhookConfigId",
        to = "super::webhook_configs::Column::Id",
        on_delete = "SetNull"
    )]
    Config,
    #[sea_orm(has_many = "super::webhook_attempts::Entity")]
    Attempts,
}

impl Related<super::webhook_configs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Config.def()
    }
}

impl Related<super::webhook_attempts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Attempts.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
