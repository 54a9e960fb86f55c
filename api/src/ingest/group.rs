//! Group commit for received events: events that arrive while a batch is being written go
//! together into the next one, which is a configuration read and one atomic statement (events,
//! deliveries, jobs) with one synchronous commit, instead of six round trips per event.
//!
//! Each caller is answered only after the statement holding its event has committed, so a 200
//! still means the event is durable. A batch refused for a reason other than the connection is
//! retried one event at a time, so one bad event cannot fail the others.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, OnceLock};

use entity::{
    ConfigId, ConfigStatus, Direction, EventStatus, MessageId, webhook_configs, webhook_events,
};
use sea_orm::{
    ActiveEnum, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement,
    TransactionTrait,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wirehook_core::batch::{BatchError, Batcher};
use wirehook_core::queue::fan_out;

use super::{Disposition, Received, Recorded};

/// The most events one transaction records.
const MAX_BATCH: usize = 64;
/// Batches under way at once: one leaves the CPU idle while a batch commits, more than one
/// without a threshold halves the batches (bench/PROFILE.md, "ingest").
const PARALLEL_BATCHES: usize = 2;
/// A batch starts while another is under way only with this many events (the best of those
/// tried; bench/PROFILE.md, "ingest").
const MIN_OVERLAP: usize = 16;

/// Why an event was not recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// As many events as the ingestor holds are already waiting for or in a commit.
    #[error("the group commit is full")]
    Overloaded,
    /// The database refused or could not be reached.
    #[error(transparent)]
    Db(Arc<DbErr>),
}

/// An event on its way through the group commit with its slot, freed when its batch is done.
type Slotted = (Received, OwnedSemaphorePermit);

/// Records received events, batching concurrent callers into shared transactions; cheap to
/// clone.
///
/// Bounded: at most `capacity` events are waiting for or in a commit, counted from the call to
/// the end of the batch that holds the event (a caller that gave up, e.g. timed out, keeps its
/// slot until then), so the batcher's queue never holds more than `capacity` events.
#[derive(Clone)]
pub struct Ingestor {
    db: DatabaseConnection,
    slots: Arc<Semaphore>,
    /// Spawned on first use, so an `Ingestor` can be built outside a runtime (the spec writer).
    batcher: Arc<OnceLock<Batcher<Slotted, Result<Recorded, DbErr>>>>,
}

impl Ingestor {
    /// An ingestor recording into `db` that holds at most `capacity` events at once.
    pub fn new(db: DatabaseConnection, capacity: usize) -> Self {
        Self {
            db,
            slots: Arc::new(Semaphore::new(capacity.max(1))),
            batcher: Arc::new(OnceLock::new()),
        }
    }

    /// Records `received` and queues one delivery to every active configuration subscribed to
    /// its type whose filters match, sharing the statement with whatever other events arrived
    /// meanwhile; returns once it has committed. A key recorded before makes it a duplicate:
    /// nothing is recorded or queued, and the first event is returned. With `capacity` events
    /// already under way, refuses at once ([`IngestError::Overloaded`]) instead of queueing.
    pub async fn record(&self, received: Received) -> Result<Recorded, IngestError> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| IngestError::Overloaded)?;
        let batcher = self.batcher.get_or_init(|| {
            let db = self.db.clone();
            Batcher::spawn_overlapping(
                MAX_BATCH,
                PARALLEL_BATCHES,
                MIN_OVERLAP,
                move |slotted: Vec<Slotted>| {
                    let db = db.clone();
                    let (items, slots): (Vec<Received>, Vec<_>) = slotted.into_iter().unzip();
                    async move {
                        let recorded = record_batch(&db, items).await;
                        drop(slots);
                        recorded
                    }
                },
            )
        });
        match batcher.call((received, slot)).await {
            Ok(recorded) => recorded.map_err(|e| IngestError::Db(Arc::new(e))),
            Err(BatchError::Failed(error)) => Err(IngestError::Db(error)),
            Err(BatchError::Stopped) => Err(IngestError::Db(Arc::new(DbErr::Custom(
                "the ingest task stopped".to_owned(),
            )))),
        }
    }
}

/// Records `items` together; falls back to one at a time when the batch is refused for a
/// reason other than the connection, so one bad event cannot fail the others. `Err` only when
/// the connection failed.
pub async fn record_batch(
    db: &DatabaseConnection,
    items: Vec<Received>,
) -> Result<Vec<Result<Recorded, DbErr>>, DbErr> {
    wirehook_core::batch::together_or_alone(&items, "ingest", |batch| record_together(db, batch))
        .await
}

/// Connections [`warm_up`] prepares: a batch takes one from the pool to read the configurations
/// and another for its statement, and the pool hands out its idle connections in turn, so under
/// load each of the connections the batches keep open runs both statements.
pub const WARM_CONNECTIONS: usize = PARALLEL_BATCHES * 2;

/// Runs of a statement before PostgreSQL reuses a plan: it plans a prepared statement anew for
/// each of its first five runs, then weighs its generic plan (`choose_custom_plan`), which the
/// sixth run builds and later runs reuse.
const RUNS_UNTIL_PLANNED: usize = 6;

/// Runs the statements a batch runs, for no event, [`RUNS_UNTIL_PLANNED`] times on each of
/// [`WARM_CONNECTIONS`] connections at once, and rolls them back.
///
/// A fresh connection loads the history's partitions and indexes into its caches on first use,
/// and plans the group commit's statement on each of its first six runs, about 18 ms of CPU
/// each on the partitioned history. Left to the first requests, that is about half a second of
/// CPU in the first second of traffic: the answers slow down, the ingest bound takes them for a
/// standing queue, and at 1,500 requests a second it refused 400–800 of the first second's
/// (`bench/PROFILE.md`).
pub async fn warm_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    // Each transaction holds its connection until the rollback: distinct connections.
    let mut held = Vec::with_capacity(WARM_CONNECTIONS);
    for _ in 0..WARM_CONNECTIONS {
        held.push(db.begin().await?);
    }
    let types = BTreeSet::from([entity::EventType::CallCompleted.as_str()]);
    for tx in &held {
        for _ in 0..RUNS_UNTIL_PLANNED {
            subscribed_configs(tx, &types).await?;
            for ordered in [false, true] {
                tx.query_all_raw(fan_out::statement("[]".into(), "[]".into(), 0, ordered))
                    .await?;
            }
        }
    }
    for tx in held {
        tx.rollback().await?;
    }
    Ok(())
}

/// Records every item in one statement, which PostgreSQL runs atomically and commits before
/// answering: the events (a taken key skips its event), one delivery per matching
/// configuration that is still active (locked `FOR KEY SHARE`, so a delete waits), and their
/// jobs. The configurations were read just before; the statement re-checks each one it uses.
async fn record_together(
    db: &DatabaseConnection,
    items: &[Received],
) -> Result<Vec<Recorded>, DbErr> {
    let message_ids: Vec<String> = items
        .iter()
        .map(|_| MessageId::generate().into_inner())
        .collect();
    let types: BTreeSet<&str> = items
        .iter()
        .filter_map(|item| match &item.disposition {
            Disposition::Deliver(t) => Some(t.as_str()),
            Disposition::Ignore { .. } => None,
        })
        .collect();
    let configs = subscribed_configs(db, &types).await?;
    let mut planned = Vec::new();
    for (pos, (item, parent)) in items.iter().zip(&message_ids).enumerate() {
        let Disposition::Deliver(event_type) = &item.disposition else {
            continue;
        };
        for config in configs.iter().filter(|c| {
            c.event_types.0.iter().any(|t| t == event_type.as_str())
                && c.filters.matches(&item.payload)
        }) {
            planned.push(PlannedDelivery {
                message_id: MessageId::generate().into_inner(),
                parent,
                config_id: ConfigId(config.id),
                okey: ordering_key(config, item),
                pos,
            });
        }
    }
    let ordered = planned.iter().any(|p| p.okey.is_some());
    let rows = inbound_rows(items, &message_ids);
    let inserted = db
        .query_all_raw(fan_out::statement(
            json_text(&rows)?,
            json_text(&planned)?,
            planned.len(),
            ordered,
        ))
        .await?;
    let by_message: HashMap<&str, &InboundRow<'_>> =
        rows.iter().map(|r| (r.message_id, r)).collect();
    let mut fresh: HashMap<String, Recorded> = HashMap::with_capacity(inserted.len());
    for row in inserted {
        let message_id: String = row.try_get("", "message_id")?;
        let Some(sent) = by_message.get(message_id.as_str()) else {
            return Err(DbErr::RecordNotInserted);
        };
        let deliveries: i64 = row.try_get("", "deliveries")?;
        // What was inserted is what was sent: build the model instead of decoding the row's
        // JSON columns back.
        let event = webhook_events::Model {
            id: row.try_get("", "id")?,
            message_id: message_id.clone(),
            direction: Direction::Inbound,
            source: sent.item.source,
            event_type: sent.event_type.to_owned(),
            payload: sent.item.payload.clone(),
            status: sent.status,
            attempts: 0,
            attempt_base: 0,
            webhook_config_id: None,
            response_data: None,
            parent_event_id: None,
            dedupe_key: sent.item.dedupe_key.clone(),
            next_attempt_at: None,
            last_error: None,
            provider_payload: sent.item.provider_payload.clone(),
            client_ip: sent.item.client_ip.clone(),
            ordering_key: None,
            ordering_seq: None,
            ordering_previous: None,
            waiting_on_key: false,
            created_at: row.try_get("", "created_at")?,
            updated_at: row.try_get("", "updated_at")?,
        };
        fresh.insert(
            message_id,
            Recorded {
                event,
                duplicate: false,
                deliveries: usize::try_from(deliveries).unwrap_or(0),
            },
        );
    }
    let duplicates = find_firsts(
        db,
        items
            .iter()
            .zip(&message_ids)
            .filter(|(_, id)| !fresh.contains_key(id.as_str()))
            .map(|(item, _)| item),
    )
    .await?;
    items
        .iter()
        .zip(&message_ids)
        .map(|(item, id)| match fresh.remove(id) {
            Some(recorded) => Ok(recorded),
            None => item
                .dedupe_key
                .as_ref()
                .and_then(|key| duplicates.get(&(item.source.as_str(), key.clone())))
                .map(|first| Recorded {
                    event: first.clone(),
                    duplicate: true,
                    deliveries: 0,
                })
                .ok_or_else(|| {
                    DbErr::RecordNotFound("the event first recorded under this key is gone".into())
                }),
        })
        .collect()
}

/// `value` as JSON text, the form the batch statement's parameters take: one prepared
/// statement for any batch size, and payloads serialized once, straight from the items.
fn json_text(value: &impl Serialize) -> Result<String, DbErr> {
    serde_json::to_string(value).map_err(|e| DbErr::Json(e.to_string()))
}

/// A delivery the batch statement creates if its parent is inserted and its configuration is
/// still active.
#[derive(Serialize)]
struct PlannedDelivery<'a> {
    message_id: String,
    /// The inbound row's message id.
    parent: &'a str,
    config_id: ConfigId,
    /// Its ordering key, for a configuration with `ordering`; sent only when some delivery of
    /// the batch has one (the statement without ordering does not read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    okey: Option<String>,
    /// The event's place in the batch, which is the order it was accepted in.
    pos: usize,
}

/// The key `item`'s delivery to `config` is ordered under: the publisher's `orderingKey`, else
/// the value at the configuration's pointer; `None` for an unordered configuration, or (counted)
/// an event without a usable value there, which is then delivered unordered.
fn ordering_key(config: &webhook_configs::Model, item: &Received) -> Option<String> {
    let ordering = config.ordering.as_ref()?;
    let key = item
        .ordering_key
        .clone()
        .or_else(|| ordering.key_of(&item.payload));
    if key.is_none() {
        metrics::counter!(wirehook_core::metrics::ORDERED_MISSING_KEY_TOTAL).increment(1);
        tracing::debug!(
            config_id = config.id,
            pointer = %ordering.key,
            "ordered configuration: no key in the event, delivered unordered"
        );
    }
    key
}

fn inbound_rows<'a>(items: &'a [Received], message_ids: &'a [String]) -> Vec<InboundRow<'a>> {
    items
        .iter()
        .zip(message_ids)
        .map(|(item, message_id)| {
            let (status, event_type) = match &item.disposition {
                Disposition::Deliver(t) => (EventStatus::Processed, t.as_str()),
                Disposition::Ignore { provider_type } => {
                    (EventStatus::Ignored, provider_type.as_str())
                }
            };
            InboundRow {
                item,
                message_id,
                event_type,
                status,
            }
        })
        .collect()
}

/// One inbound event as the batch statement reads it.
struct InboundRow<'a> {
    item: &'a Received,
    message_id: &'a str,
    event_type: &'a str,
    status: EventStatus,
}

impl Serialize for InboundRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut row = serializer.serialize_struct("InboundRow", 8)?;
        row.serialize_field("message_id", self.message_id)?;
        row.serialize_field("source", self.item.source.as_str())?;
        row.serialize_field("event_type", self.event_type)?;
        row.serialize_field("payload", &self.item.payload)?;
        row.serialize_field("status", &self.status.to_value())?;
        row.serialize_field("provider_payload", &self.item.provider_payload)?;
        row.serialize_field("dedupe_key", &self.item.dedupe_key)?;
        row.serialize_field("client_ip", &self.item.client_ip)?;
        row.end()
    }
}

/// The events first recorded under the keys of `duplicates`, by `(source, key)`: in the
/// de-duplication window (today, yesterday and the legacy partition), which prunes the rest.
async fn find_firsts<'a>(
    db: &DatabaseConnection,
    duplicates: impl Iterator<Item = &'a Received>,
) -> Result<HashMap<(&'static str, String), webhook_events::Model>, DbErr> {
    let keys: Vec<Value> = duplicates
        .filter_map(|d| {
            d.dedupe_key
                .as_ref()
                .map(|k| json!({"source": d.source.to_value(), "dedupe_key": k}))
        })
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT * FROM webhook_events \
         WHERE (id < 68719476736 \
                OR id >= webhook_day_first_id((now() AT TIME ZONE 'UTC')::date - 1)) \
           AND dedupe_key IS NOT NULL AND (source, dedupe_key) IN ( \
           SELECT r.source, r.dedupe_key \
           FROM jsonb_to_recordset($1::jsonb) AS r(source text, dedupe_key text))",
        [Value::Array(keys).into()],
    );
    let mut firsts = HashMap::new();
    for row in db.query_all_raw(stmt).await? {
        let event = webhook_events::Model::from_query_result(&row, "")?;
        if let Some(key) = event.dedupe_key.clone() {
            firsts.insert((event.source.as_str(), key), event);
        }
    }
    Ok(firsts)
}

/// The query of [`subscribed_configs`]. `?|` (any of these keys) is a GIN operator of the
/// partial index `webhook_configs_active_event_types` (`WHERE status = 'active'`), and the
/// planner proves an index predicate only from a literal: with the status bound as a parameter,
/// the generic plan a prepared statement may switch to after five runs cannot use the index,
/// even with sequential scans disabled (checked with `EXPLAIN` under `plan_cache_mode =
/// force_generic_plan`). So the status is a literal, written from the enum.
static SUBSCRIBED_CONFIGS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT * FROM webhook_configs \
         WHERE status = {} \
           AND event_types ?| ARRAY(SELECT jsonb_array_elements_text($1::jsonb))",
        ConfigStatus::Active.sql_literal()
    )
});

/// The active configurations subscribed to any of `types` (the batch statement locks and
/// re-checks the ones it uses).
async fn subscribed_configs(
    db: &impl ConnectionTrait,
    types: &BTreeSet<&str>,
) -> Result<Vec<webhook_configs::Model>, DbErr> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        SUBSCRIBED_CONFIGS_SQL.as_str(),
        [json!(types).into()],
    );
    db.query_all_raw(stmt)
        .await?
        .iter()
        .map(|row| webhook_configs::Model::from_query_result(row, ""))
        .collect()
}
