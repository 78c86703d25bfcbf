//! Global tables: a materialized view of a whole compacted topic in every
//! replica, for handlers to look rows up (`ctx.table("catalog").get(&id)`),
//! like Kafka Streams' GlobalKTable.
//!
//! A table reads every partition (read_committed) from its first offset. It
//! is *restored* once each partition reached the end (last stable offset) it
//! had when the table started: the functions that look it up start only then.
//! It then keeps reading, so changes arrive a fetch or so after they commit.
//! One table per topic per process, shared by every function that declares it.
//!
//! Rows are JSON values: a JSON topic's value (Connect's schema wrapper
//! removed), Debezium's `after` for a change event, or an Avro value decoded
//! with its writer's schema. A tombstone, or a Debezium delete (`op = "d"`,
//! `after = null`), removes the key.
//!
//! ```no_run
//! # async fn demo(app: &kfn::app::App) -> Result<(), kfn::kafka::KafkaError> {
//! use kfn_sdk::TableLookup;
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! let format = kfn::config::TopicFormat::Json;
//! let table = kfn::table::GlobalTable::start(&app.cluster, app.schemas.clone(), "shop.products", format, shutdown).await?;
//! table.restored().await;
//! let row = table.row("SKU-001"); // Some(JSON) or None
//! # let _ = row; Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use crate::avro::SchemaCache;
use crate::backoff::Pauses;
use crate::config::TopicFormat;
use crate::json::{payload, JsonValue};
use crate::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use crate::kafka::fetch::{ConsumedRecord, Isolation};
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::{Cluster, KafkaError};

/// The latest row of every key of one compacted topic, kept current.
pub struct GlobalTable {
    topic: String,
    format: TopicFormat,
    rows: RwLock<HashMap<String, Value>>,
    /// Partitions not yet read to the end they had at start.
    restoring: AtomicUsize,
    restored: watch::Sender<bool>,
    started: Instant,
}

/// What one record does to the table.
#[derive(Debug, PartialEq)]
enum Change {
    /// The key's row is now this.
    Put(Value),
    /// The key has no row any more.
    Delete,
}

impl GlobalTable {
    /// Starts reading every partition of `topic` (values of `format`, Avro
    /// resolved through `schemas`); reading stops when `shutdown` turns true.
    pub async fn start(
        cluster: &Cluster,
        schemas: Arc<SchemaCache>,
        topic: &str,
        format: TopicFormat,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, KafkaError> {
        let info = cluster.topic(topic).await?;
        let mut ends = Vec::new();
        for p in &info.partitions {
            let tp = TopicPartition::new(topic, p.partition);
            let start = list_offset(cluster, &tp, LogEnd::Earliest, Isolation::ReadCommitted).await?;
            // read_committed: the last stable offset, below which every transaction is decided.
            let end = list_offset(cluster, &tp, LogEnd::Latest, Isolation::ReadCommitted).await?;
            ends.push((tp, start, end));
        }
        let behind = ends.iter().filter(|(_, start, end)| end > start).count();
        let table = Arc::new(Self {
            topic: topic.to_string(),
            format,
            rows: RwLock::default(),
            restoring: AtomicUsize::new(behind),
            restored: watch::Sender::new(behind == 0),
            started: Instant::now(),
        });
        if behind == 0 {
            tracing::info!(topic, "table restored: the topic is empty");
        }
        for (tp, start, end) in ends {
            let reader = PartitionReader::new(cluster.clone(), tp, start, Isolation::ReadCommitted, LogEnd::Earliest);
            let until = (end > start).then_some(end);
            tokio::spawn(table.clone().follow(reader, until, schemas.clone(), shutdown.clone()));
        }
        Ok(table)
    }

    /// Whether every partition was read to the end it had at start.
    pub fn is_restored(&self) -> bool {
        *self.restored.borrow()
    }

    /// Waits until the table is restored.
    pub async fn restored(&self) {
        // An error means the sender is gone, which it cannot be while `self` lives.
        let _ = self.restored.subscribe().wait_for(|restored| *restored).await;
    }

    /// How many keys have a row.
    pub fn len(&self) -> usize {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key has a row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads one partition for as long as the process runs; `until`: the end
    /// offset whose reaching counts toward restoring (None: nothing to restore).
    async fn follow(
        self: Arc<Self>,
        mut reader: PartitionReader,
        mut until: Option<i64>,
        schemas: Arc<SchemaCache>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let new_pauses = || Pauses::new(Duration::from_millis(500), Duration::from_secs(5));
        let mut pauses = new_pauses();
        while !*shutdown.borrow() {
            let batch = tokio::select! {
                b = reader.next() => b,
                _ = shutdown.changed() => break,
            };
            match batch {
                Ok(batch) => {
                    pauses = new_pauses();
                    for record in batch.records {
                        self.apply(&schemas, record).await;
                    }
                    if until.is_some_and(|end| reader.position() >= end) {
                        until = None;
                        self.partition_restored();
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = %reader.partition(), error = %e, "table fetch failed");
                    tokio::select! {
                        _ = pauses.pause() => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
    }

    fn partition_restored(&self) {
        if self.restoring.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!(topic = %self.topic, rows = self.len(), elapsed_ms = self.started.elapsed().as_millis() as u64, "table restored");
            self.restored.send_replace(true);
        }
    }

    async fn apply(&self, schemas: &SchemaCache, record: ConsumedRecord) {
        let Some(key) = record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()) else {
            tracing::warn!(topic = %self.topic, offset = record.offset, "table record skipped: no key");
            return;
        };
        let change = match (&record.value, self.format) {
            (None, _) => Ok(Change::Delete),
            (Some(value), TopicFormat::Json) => json_change(value),
            (Some(value), TopicFormat::Avro) => avro_row(schemas, value).await.map(Change::Put),
        };
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        match change {
            Ok(Change::Put(row)) => {
                rows.insert(key, row);
            }
            Ok(Change::Delete) => {
                rows.remove(&key);
            }
            Err(error) => {
                tracing::warn!(topic = %self.topic, offset = record.offset, %error, "table record skipped: cannot decode")
            }
        }
    }
}

impl kfn_sdk::TableLookup for GlobalTable {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn row(&self, key: &str) -> Option<Value> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }
}

/// What a JSON value does: a Debezium change event puts its `after` (or
/// deletes, for `op = "d"` or a null `after`); any other value is the row.
fn json_change(value: &[u8]) -> Result<Change, String> {
    let value = match payload(value)? {
        JsonValue::Tombstone => return Ok(Change::Delete),
        JsonValue::Value(value) => value,
    };
    let is_envelope = value.get("op").is_some_and(Value::is_string) && value.get("after").is_some();
    if !is_envelope {
        return Ok(Change::Put(value));
    }
    match (value.get("op").and_then(Value::as_str), value.get("after")) {
        (Some("d"), _) | (_, Some(Value::Null)) | (_, None) => Ok(Change::Delete),
        (_, Some(after)) => Ok(Change::Put(after.clone())),
    }
}

/// An Avro value (Confluent framing) as JSON, decoded with its writer's schema.
async fn avro_row(schemas: &SchemaCache, value: &[u8]) -> Result<Value, String> {
    let writer = schemas.resolve(value).await.map_err(|e| e.to_string())?;
    crate::avro::decode::<Value>(writer.schema_id, &writer.schema, writer.datum).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(value: Value) -> Change {
        json_change(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_debezium_event_puts_its_after_and_a_delete_removes_the_key() {
        let row = json!({"product_id": "SKU-001", "price": "19.99", "stock": 5});
        assert_eq!(change(json!({"before": null, "after": row, "op": "r"})), Change::Put(row.clone()));
        assert_eq!(change(json!({"before": null, "after": row, "op": "u", "source": {}})), Change::Put(row.clone()));
        assert_eq!(change(json!({"before": row, "after": null, "op": "d"})), Change::Delete);
        assert_eq!(json_change(b"").unwrap(), Change::Delete, "a tombstone");
    }

    #[test]
    fn a_plain_json_row_is_the_row_and_garbage_is_an_error() {
        let row = json!({"product_id": "SKU-001", "op": 3});
        assert_eq!(change(row.clone()), Change::Put(row));
        let wrapped = json!({"schema": {"type": "struct"}, "payload": {"id": "a"}});
        assert_eq!(change(wrapped), Change::Put(json!({"id": "a"})));
        assert!(json_change(b"\x00\x00\x00\x00\x01avro").is_err());
    }
}
