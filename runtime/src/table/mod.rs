//! Table views: the latest row of every key of an aggregate's table topic,
//! read from all its partitions, for pull queries; and [`GlobalTable`]s,
//! the tables handlers look rows up in (global.rs).
//!
//! A view reads every partition (read_committed) from its first offset and
//! keeps reading, so any replica answers for every key, whichever replica
//! folds it. A view lags its table by a fetch or so: pull queries are
//! eventually consistent, as ksqlDB's are.
//!
//! ```no_run
//! # async fn demo(app: &kfn::app::App, fold: &kfn_sdk::AggregateHandler) -> Result<(), kfn::kafka::KafkaError> {
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! let view = kfn::table::TableView::start(&app.cluster, app.schemas.clone(), fold.decode_row.clone(), "orders.status", shutdown).await?;
//! let rows = view.rows(); // [(key, JSON row)]
//! # let _ = rows; Ok(()) }
//! ```

mod global;
mod query;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kfn_sdk::{ErasedRowDecode, Row};
use tokio::sync::watch;

pub use global::GlobalTable;
pub use query::query_routes;

use crate::avro::SchemaCache;
use crate::backoff::Pauses;
use crate::kafka::consumer::{LogEnd, PartitionReader};
use crate::kafka::fetch::{ConsumedRecord, Isolation};
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::{Cluster, KafkaError};
use crate::metrics::{FloatGauge, TableLabels};
use prometheus_client::metrics::family::Family;

/// The latest rows of one table topic.
pub struct TableView {
    topic: String,
    rows: RwLock<BTreeMap<String, Row>>,
    gauges: Option<Family<TableLabels, FloatGauge>>,
}

impl TableView {
    /// Starts reading every partition of `topic`; reading stops when `shutdown` turns true.
    pub async fn start(
        cluster: &Cluster,
        schemas: Arc<SchemaCache>,
        decode: ErasedRowDecode,
        topic: &str,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, KafkaError> {
        Self::start_exporting(cluster, schemas, decode, topic, None, shutdown).await
    }

    /// Like [`TableView::start`], also exporting each row's numeric top-level fields as
    /// `kfn_table_value{table,key,field}` gauges (timestamps, fields ending in `_at`,
    /// `_start` or `_end`, are left out).
    pub async fn start_exporting(
        cluster: &Cluster,
        schemas: Arc<SchemaCache>,
        decode: ErasedRowDecode,
        topic: &str,
        gauges: Option<Family<TableLabels, FloatGauge>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, KafkaError> {
        let info = cluster.topic(topic).await?;
        let view = Arc::new(Self { topic: topic.to_string(), rows: RwLock::default(), gauges });
        for p in &info.partitions {
            let tp = TopicPartition::new(topic, p.partition);
            let reader = PartitionReader::new(cluster.clone(), tp, 0, Isolation::ReadCommitted, LogEnd::Earliest);
            tokio::spawn(view.clone().follow(reader, schemas.clone(), decode.clone(), shutdown.clone()));
        }
        Ok(view)
    }

    /// The table topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every row as JSON, by key.
    pub fn rows(&self) -> Vec<(String, serde_json::Value)> {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        rows.iter().map(|(k, r)| (k.clone(), r.to_json())).collect()
    }

    /// The row of `key` as JSON.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).get(key).map(|r| r.to_json())
    }

    /// The rows themselves (for metrics exporters).
    pub fn snapshot(&self) -> Vec<(String, Row)> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, r)| (k.clone(), r.clone())).collect()
    }

    async fn follow(
        self: Arc<Self>,
        mut reader: PartitionReader,
        schemas: Arc<SchemaCache>,
        decode: ErasedRowDecode,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // After a failed fetch: 500 ms as before, doubling to 5 s while the
        // broker stays unreachable (it was a fixed 500 ms), from 500 ms again
        // after a fetch that worked.
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
                        self.apply(&schemas, &decode, record).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = %reader.partition(), error = %e, "table view fetch failed");
                    tokio::select! {
                        _ = pauses.pause() => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
    }

    async fn apply(&self, schemas: &SchemaCache, decode: &ErasedRowDecode, record: ConsumedRecord) {
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        let Some(value) = record.value else {
            self.rows.write().unwrap_or_else(|p| p.into_inner()).remove(&key);
            return;
        };
        let row = match schemas.resolve(&value).await {
            Ok(writer) => decode(writer.datum, &writer.schema).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match row {
            Ok(row) => {
                if let Some(gauges) = &self.gauges {
                    self.export(gauges, &key, &row.to_json());
                }
                self.rows.write().unwrap_or_else(|p| p.into_inner()).insert(key, row);
            }
            Err(error) => {
                tracing::warn!(topic = %self.topic, offset = record.offset, %error, "table row skipped: cannot decode")
            }
        }
    }
}

impl TableView {
    fn export(&self, gauges: &Family<TableLabels, FloatGauge>, key: &str, row: &serde_json::Value) {
        let Some(fields) = row.as_object() else { return };
        for (field, value) in fields {
            if field.ends_with("_at") || field.ends_with("_start") || field.ends_with("_end") {
                continue;
            }
            // Decimals come as strings ("12.50"), counts as numbers.
            let number = value.as_f64().or_else(|| value.as_str().and_then(|s| s.parse::<f64>().ok()));
            if let Some(number) = number {
                let labels = TableLabels { table: self.topic.clone(), key: key.to_string(), field: field.clone() };
                gauges.get_or_create(&labels).set(number);
            }
        }
    }
}
