//! Recording received events (provider webhooks and platform events) and fanning them out to
//! the matching configurations, each in one transaction.

use entity::{
    ConfigStatus, Direction, EventStatus, EventType, MessageId, Source, webhook_configs,
    webhook_events,
};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QuerySelect, Statement, TransactionTrait,
};
use serde_json::{Value, json};
use wirehook_worker::queue::{self, NewDelivery};

/// The most of a rejected request's body that is kept for the audit.
pub const REJECTED_BODY_LIMIT: usize = 4 * 1024;

/// What becomes of a verified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// A catalog event: recorded `processed` and delivered to the matching configurations.
    Deliver(EventType),
    /// Not a type the platform knows: recorded `ignored` under the provider's own type name.
    Ignore {
        /// The provider's name for the event.
        provider_type: String,
    },
}

/// A verified event to record.
#[derive(Debug, Clone)]
pub struct Received {
    pub source: Source,
    pub disposition: Disposition,
    /// The platform's payload (what configurations receive as `data`).
    pub payload: Value,
    /// What the provider sent, for the audit.
    pub provider_payload: Option<Value>,
    /// Provider event identity or idempotency key; a second event with the same key is a
    /// duplicate.
    pub dedupe_key: Option<String>,
    pub client_ip: Option<String>,
}

/// The outcome of [`record`].
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The recorded event; for a duplicate, the event first recorded under the same key.
    pub event: webhook_events::Model,
    /// The key was seen before: nothing was recorded or delivered this time.
    pub duplicate: bool,
    /// Outbound deliveries queued.
    pub deliveries: usize,
}

/// Records `received` and queues its deliveries, all in one transaction; a duplicate key
/// records and queues nothing.
///
/// The unique index on `(source, dedupe_key)` decides duplicates, so two api replicas racing on
/// the same provider retry fan out once: the second insert waits for the first transaction and
/// then finds the key taken.
pub async fn record(db: &DatabaseConnection, received: Received) -> Result<Recorded, DbErr> {
    let txn = db.begin().await?;
    let Some(event) = insert_received(&txn, &received).await? else {
        txn.rollback().await?;
        let first = webhook_events::Entity::find()
            .filter(webhook_events::Column::Source.eq(received.source))
            .filter(webhook_events::Column::DedupeKey.eq(received.dedupe_key.clone()))
            .one(db)
            .await?
            .ok_or_else(|| {
                DbErr::RecordNotFound("the event first recorded under this key is gone".into())
            })?;
        return Ok(Recorded {
            event: first,
            duplicate: true,
            deliveries: 0,
        });
    };
    let deliveries = match &received.disposition {
        Disposition::Deliver(event_type) => {
            fan_out(
                &txn,
                received.source,
                *event_type,
                &received.payload,
                event.id,
            )
            .await?
        }
        Disposition::Ignore { .. } => 0,
    };
    txn.commit().await?;
    Ok(Recorded {
        event,
        duplicate: false,
        deliveries,
    })
}

/// Inserts the event unless its key is taken; returns it, or `None` for a duplicate.
async fn insert_received(
    txn: &DatabaseTransaction,
    received: &Received,
) -> Result<Option<webhook_events::Model>, DbErr> {
    let (status, event_type) = match &received.disposition {
        Disposition::Deliver(t) => (EventStatus::Processed, t.as_str().to_owned()),
        Disposition::Ignore { provider_type } => (EventStatus::Ignored, provider_type.clone()),
    };
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO webhook_events \
           (message_id, direction, source, event_type, payload, status, provider_payload, \
            dedupe_key, client_ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (source, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING \
         RETURNING *",
        [
            MessageId::generate().into_inner().into(),
            Direction::Inbound.to_value().into(),
            received.source.to_value().into(),
            event_type.into(),
            received.payload.clone().into(),
            status.to_value().into(),
            received.provider_payload.clone().into(),
            received.dedupe_key.clone().into(),
            received.client_ip.clone().into(),
        ],
    );
    let row = txn.query_one_raw(stmt).await?;
    row.map(|r| webhook_events::Model::from_query_result(&r, ""))
        .transpose()
}

/// Queues one delivery of the event to every active configuration subscribed to its type whose
/// filters match; returns how many.
///
/// The configurations are read `FOR KEY SHARE`, so one being deleted meanwhile waits for this
/// transaction instead of failing it; a configuration deactivated meanwhile is caught by the
/// engine, which cancels deliveries to inactive configurations.
pub async fn fan_out(
    txn: &DatabaseTransaction,
    source: Source,
    event_type: EventType,
    payload: &Value,
    parent_event_id: i64,
) -> Result<usize, DbErr> {
    let configs = webhook_configs::Entity::find()
        .filter(webhook_configs::Column::Status.eq(ConfigStatus::Active))
        .filter(Expr::cust_with_values(
            "event_types @> $1",
            [json!([event_type.as_str()])],
        ))
        .lock(LockType::KeyShare)
        .all(txn)
        .await?;
    let deliveries: Vec<NewDelivery> = configs
        .into_iter()
        .filter(|c| c.filters.matches(payload))
        .map(|c| NewDelivery {
            config_id: c.id,
            source,
            event_type: event_type.as_str().to_owned(),
            payload: payload.clone(),
            parent_event_id: Some(parent_event_id),
        })
        .collect();
    Ok(queue::enqueue(txn, deliveries).await?.len())
}

/// A request refused before it was trusted, for the audit.
#[derive(Debug, Clone)]
pub struct Rejected<'a> {
    pub source: Source,
    /// Why it was refused (the message the caller got).
    pub reason: String,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub client_ip: Option<String>,
}

/// Records a refused request as a `rejected` inbound event with at most
/// [`REJECTED_BODY_LIMIT`] bytes of its body; returns the event id.
pub async fn record_rejected(
    db: &impl ConnectionTrait,
    rejected: Rejected<'_>,
) -> Result<i64, DbErr> {
    let kept = bounded_text(rejected.body, REJECTED_BODY_LIMIT);
    let event = webhook_events::ActiveModel {
        message_id: Set(MessageId::generate().into_inner()),
        direction: Set(Direction::Inbound),
        source: Set(rejected.source),
        event_type: Set("unverified".to_owned()),
        payload: Set(json!({})),
        status: Set(EventStatus::Rejected),
        last_error: Set(Some(rejected.reason)),
        provider_payload: Set(Some(json!({
            "contentType": rejected.content_type,
            "bytes": rejected.body.len(),
            "truncated": kept.len() < rejected.body.len(),
            "body": kept,
        }))),
        client_ip: Set(rejected.client_ip),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(event.id)
}

/// The first `limit` bytes of `body` as text, cut at a character boundary; invalid UTF-8 and
/// NUL bytes (which PostgreSQL cannot store) are replaced.
fn bounded_text(body: &[u8], limit: usize) -> String {
    let mut head = &body[..body.len().min(limit)];
    if let Err(e) = std::str::from_utf8(head)
        && e.error_len().is_none()
    {
        // A character cut in half at the limit: drop its first bytes.
        head = &head[..e.valid_up_to()];
    }
    String::from_utf8_lossy(head).replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::bounded_text;

    #[test]
    fn bounded_text_keeps_short_bodies_whole() {
        assert_eq!(bounded_text(b"{\"a\":1}", 4096), "{\"a\":1}");
    }

    #[test]
    fn bounded_text_cuts_at_the_limit() {
        assert_eq!(bounded_text(&[b'x'; 5000], 4096).len(), 4096);
    }

    #[test]
    fn bounded_text_never_splits_a_character() {
        // "é" is two bytes; the limit falls between them.
        let body = "aé".as_bytes();
        assert_eq!(bounded_text(body, 2), "a");
    }

    #[test]
    fn bounded_text_replaces_invalid_utf8() {
        assert_eq!(bounded_text(&[0xff, b'a'], 10), "\u{fffd}a");
    }

    #[test]
    fn bounded_text_replaces_nul_bytes() {
        assert_eq!(bounded_text(b"a\0b", 10), "a\u{fffd}b");
    }
}
