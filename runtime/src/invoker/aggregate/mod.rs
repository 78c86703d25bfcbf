//! Aggregates: a fold of each input partition into its table partition.
//!
//! ```text
//! assigned p -> restore state of p from table partition p (read_committed)
//! chunk: for each record: window? late? -> fold(state of key, event) -> emit row to `table`
//!        commit (with the offsets under exactly_once) -> apply the chunk's rows to the state
//! ```
//!
//! The input must be keyed by the grouping key and the table partitioned
//! like the input (validated), so a key's state lives in one partition and
//! no state is ever merged across partitions. An aggregate that groups by
//! something else (`group_by`, a key function) gets that input from its rekey
//! stage ([`repartition`]) through its internal topic. The state map of a partition is
//! owned by that partition's worker: no lock is shared across partitions.

pub mod repartition;
mod restore;
mod state;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kfn_sdk::{AggCtx, AggregateHandler, Emit, Emitted, SharedRow, Window};

pub use restore::restore;
pub use state::{Overlay, PartitionState};

use super::invoke::{stack, Failure, FoldCall, FoldInput, Stack};
use crate::avro::SchemaCache;
use crate::config::{AggregateSpec, RetryPolicy};
use crate::kafka::fetch::ConsumedRecord;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::KafkaError;
use crate::metrics::FunctionMetrics;

/// The output name of an aggregate's table.
pub const TABLE_OUTPUT: &str = "table";

/// Why a partition's state could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// Reading the table failed.
    #[error("cannot read table partition {partition}: {source}")]
    Kafka {
        /// The table partition.
        partition: String,
        /// The cause.
        #[source]
        source: KafkaError,
    },
    /// A row of the table cannot be decoded as the fold's state type.
    #[error("cannot decode the row at {partition} offset {offset}: {message}")]
    Row {
        /// The table partition.
        partition: String,
        /// The row's offset.
        offset: i64,
        /// Why.
        message: String,
    },
    /// The table's end was not reached.
    #[error("restoring {partition} stalled at offset {position} before its end {end}")]
    Stalled {
        /// The table partition.
        partition: String,
        /// Where reading stopped.
        position: i64,
        /// The end it aimed at.
        end: i64,
    },
}

/// One aggregate function: its fold, table, window and policies.
pub struct Aggregate {
    /// The registered fold.
    pub handler: AggregateHandler,
    /// The table topic.
    pub table: String,
    /// Window length in ms, when windowed.
    pub window_ms: Option<i64>,
    /// Grace in ms.
    pub grace_ms: i64,
    /// Writer schemas of input records and table rows.
    pub schemas: Arc<SchemaCache>,
    /// The fold in the function's layer stack: decode, panic catch, observe, retry.
    fold: Stack<FoldCall>,
}

impl Aggregate {
    /// The aggregate of `spec` running `handler` in the layer stack of `retry`,
    /// observed by `metrics` (folds slower than `slow` are logged).
    pub fn new(
        handler: AggregateHandler,
        spec: &AggregateSpec,
        schemas: Arc<SchemaCache>,
        retry: RetryPolicy,
        metrics: FunctionMetrics,
        slow: Duration,
    ) -> Self {
        Self {
            fold: stack(FoldCall::new(handler.clone(), schemas.clone()), retry, metrics, slow),
            handler,
            table: spec.table.clone(),
            window_ms: spec.window.map(|w| w.as_millis().max(1) as i64),
            grace_ms: spec.grace.as_millis() as i64,
            schemas,
        }
    }

    /// The table partition holding the state of input partition `input`.
    pub fn table_partition(&self, input: &TopicPartition) -> TopicPartition {
        TopicPartition::new(self.table.clone(), input.partition)
    }

    /// Restores the state of input partition `input` from the table.
    pub async fn restore(
        &self,
        cluster: &crate::kafka::Cluster,
        input: &TopicPartition,
    ) -> Result<PartitionState, AggregateError> {
        restore(cluster, &self.schemas, &self.handler.decode_row, &self.table_partition(input)).await
    }

    /// Folds a chunk over `state`: per record, the row to emit (or a failure
    /// to dead-letter, or nothing for a late record), and the chunk's changes.
    pub async fn fold_all(
        &self,
        function: &Arc<str>,
        metrics: &FunctionMetrics,
        tp: &TopicPartition,
        state: &PartitionState,
        records: &[ConsumedRecord],
    ) -> (Vec<Result<Emit, Failure>>, Overlay) {
        let mut overlay = Overlay::over(state);
        let mut results = Vec::with_capacity(records.len());
        for record in records {
            overlay.observe(record.timestamp_ms);
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
            let window = self.window_ms.map(|w| {
                let start = record.timestamp_ms.div_euclid(w) * w;
                Window { start_ms: start, end_ms: start.saturating_add(w) }
            });
            if let Some(window) = window {
                if window.end_ms <= overlay.stream_time().saturating_sub(self.grace_ms) {
                    metrics.late.inc();
                    tracing::debug!(
                        function = %function, partition = %tp, offset = record.offset,
                        window_start = window.start_ms, stream_time = overlay.stream_time(), "late record dropped"
                    );
                    results.push(Ok(Emit::none()));
                    continue;
                }
            }
            let state_key = match window {
                Some(w) => format!("{}:{key}", w.start_ms),
                None => key,
            };
            let ctx = AggCtx {
                function: function.clone(),
                partition: tp.partition,
                offset: record.offset,
                key: record.key.clone(),
                state_key,
                timestamp_ms: record.timestamp_ms,
                window,
            };
            let value = record.value.as_deref().unwrap_or_default();
            let input =
                FoldInput { ctx: &ctx, previous: overlay.get(state, &ctx.state_key), topic: &tp.topic, attempt: 1 };
            let folded = self.fold.run(input, value).await;
            results.push(folded.map(|row| {
                overlay.set(ctx.state_key.clone(), row.clone());
                Emit {
                    events: vec![Emitted {
                        output: Cow::Borrowed(TABLE_OUTPUT),
                        key: Some(Bytes::from(ctx.state_key.into_bytes())),
                        value: Box::new(SharedRow(row)),
                        headers: Vec::new(),
                    }],
                }
            }));
        }
        (results, overlay)
    }
}

#[cfg(test)]
mod tests;
