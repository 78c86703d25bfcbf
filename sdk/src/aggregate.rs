//! Aggregates: a fold of a keyed stream into a table, `(state, event) -> state`.
//!
//! The runtime keeps one state per key (or per window and key), restores it
//! from the aggregate's compacted table topic when a partition is assigned,
//! and writes every new state to that table. A fold is a plain, synchronous
//! function: it must not do I/O, so it runs the same way when a chunk of
//! records is folded again after a failure.
//!
//! ```
//! use kfn_sdk::{AggCtx, Event, FnError, Registry};
//! # #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! # struct Sale { product_id: String, quantity: i64 }
//! # impl Event for Sale { const NAME: &'static str = "Sale"; }
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! struct Totals { product_id: String, quantity: i64 }
//! # impl Event for Totals { const NAME: &'static str = "Totals"; }
//! fn add(_ctx: &AggCtx, state: Option<Totals>, sale: Sale) -> Result<Totals, FnError> {
//!     let mut totals = state.unwrap_or(Totals { product_id: sale.product_id.clone(), quantity: 0 });
//!     totals.quantity += sale.quantity;
//!     Ok(totals)
//! }
//! let mut registry = Registry::default();
//! registry.aggregate("sales_by_product", add);
//! assert!(registry.aggregate_handler("sales_by_product").is_some());
//! ```

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

use crate::{EncodeError, ErasedEvent, Event, FnError, InvokeError};

/// A tumbling window: `[start_ms, end_ms)` in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First millisecond of the window (inclusive).
    pub start_ms: i64,
    /// End of the window (exclusive).
    pub end_ms: i64,
}

/// What a fold knows about the record it folds.
#[derive(Debug, Clone)]
pub struct AggCtx {
    /// The aggregate's name from functions.toml.
    pub function: Arc<str>,
    /// The input partition (and table partition) of the record.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's key: the grouping key.
    pub key: Option<Bytes>,
    /// The key of the state in the table: the record key, or `<window_start_ms>:<key>` when windowed.
    pub state_key: String,
    /// The record's timestamp (event time), ms since the epoch.
    pub timestamp_ms: i64,
    /// The record's window, when the aggregate is windowed.
    pub window: Option<Window>,
}

impl AggCtx {
    /// The grouping key as UTF-8 text, if it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// A row of an aggregate's table: a type-erased state.
pub trait TableRow: ErasedEvent + Any {
    /// The row as `Any`, so the typed fold can take its state back.
    fn as_any(&self) -> &dyn Any;
    /// The row as JSON, for pull queries (decimals as strings).
    fn to_json(&self) -> serde_json::Value;
}

impl<T: Event + std::fmt::Debug> TableRow for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A shared table row.
pub type Row = Arc<dyn TableRow>;

/// A [`Row`] emitted to the table without copying it.
pub struct SharedRow(pub Row);

impl ErasedEvent for SharedRow {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn encode(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.0.encode(schema, out)
    }

    fn debug(&self) -> String {
        self.0.debug()
    }
}

/// A fold, type-erased: the previous row, the input datum and its writer schema -> the new row.
pub type ErasedFold =
    Arc<dyn Fn(&AggCtx, Option<&Row>, &[u8], &serde_avro_fast::Schema) -> Result<Row, InvokeError> + Send + Sync>;

/// Decodes a table row (its Avro datum with the writer's schema), for restoring state.
pub type ErasedRowDecode = Arc<dyn Fn(&[u8], &serde_avro_fast::Schema) -> Result<Row, InvokeError> + Send + Sync>;

/// A registered fold, the event type it takes and the row type it keeps.
#[derive(Clone)]
pub struct AggregateHandler {
    /// The Avro full name of the input event.
    pub input: &'static str,
    /// The Avro full name of the state (the table's schema).
    pub state: &'static str,
    /// The fold.
    pub fold: ErasedFold,
    /// The row decoder.
    pub decode_row: ErasedRowDecode,
}

impl AggregateHandler {
    /// Wraps a typed fold.
    pub fn new<E, S, F>(f: F) -> Self
    where
        E: Event,
        S: Event + Clone + std::fmt::Debug,
        F: Fn(&AggCtx, Option<S>, E) -> Result<S, FnError> + Send + Sync + 'static,
    {
        let fold: ErasedFold = Arc::new(move |ctx, previous, datum, schema| {
            let event = serde_avro_fast::from_datum_slice::<E>(datum, schema)
                .map_err(|e| InvokeError::Decode { event: E::NAME, message: e.to_string() })?;
            let previous = match previous {
                None => None,
                Some(row) => match row.as_any().downcast_ref::<S>() {
                    Some(s) => Some(s.clone()),
                    None => {
                        return Err(InvokeError::Decode {
                            event: S::NAME,
                            message: format!("the state is a {}", row.name()),
                        })
                    }
                },
            };
            let next = f(ctx, previous, event)?;
            Ok(Arc::new(next) as Row)
        });
        let decode_row: ErasedRowDecode = Arc::new(|datum, schema| {
            serde_avro_fast::from_datum_slice::<S>(datum, schema)
                .map(|s| Arc::new(s) as Row)
                .map_err(|e| InvokeError::Decode { event: S::NAME, message: e.to_string() })
        });
        Self { input: E::NAME, state: S::NAME, fold, decode_row }
    }
}
