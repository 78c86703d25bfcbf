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

use crate::{Ctx, Emit, Emitted, EncodeError, ErasedEvent, Event, FnError, InvokeError};

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

/// The output name of an aggregate's repartition topic (`<function>.repartition`).
pub const REPARTITION_OUTPUT: &str = "repartition";

/// An aggregate's rekey stage, type-erased: the input datum and its writer
/// schema -> the same event once per grouping key, for [`REPARTITION_OUTPUT`].
/// `Some(field)`: the key is that field of the event (`group_by` in
/// functions.toml); `None`: the fold's key function gives the keys.
pub type ErasedRekey =
    Arc<dyn Fn(&Ctx, &[u8], &serde_avro_fast::Schema, Option<&str>) -> Result<Emit, InvokeError> + Send + Sync>;

/// A key function, type-erased over the event it reads.
type KeyFn<E> = Arc<dyn Fn(&Ctx, &E) -> Result<Vec<String>, FnError> + Send + Sync>;

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
    /// The rekey stage of an aggregate that groups by a field or a key function.
    pub rekey: ErasedRekey,
    /// Whether the fold came with a key function ([`crate::Registry::aggregate_by`]):
    /// kfn then repartitions its input by the keys it returns.
    pub key_function: bool,
}

impl AggregateHandler {
    /// Wraps a typed fold.
    pub fn new<E, S, F>(f: F) -> Self
    where
        E: Event,
        S: Event + Clone + std::fmt::Debug,
        F: Fn(&AggCtx, Option<S>, E) -> Result<S, FnError> + Send + Sync + 'static,
    {
        Self::with_keys::<E, S, F>(f, None)
    }

    /// Wraps a typed fold whose input kfn repartitions by the keys `keys` returns
    /// for each event (see [`crate::Registry::aggregate_by`]).
    pub fn keyed_by<E, S, K, F>(keys: K, f: F) -> Self
    where
        E: Event,
        S: Event + Clone + std::fmt::Debug,
        K: Fn(&Ctx, &E) -> Result<Vec<String>, FnError> + Send + Sync + 'static,
        F: Fn(&AggCtx, Option<S>, E) -> Result<S, FnError> + Send + Sync + 'static,
    {
        Self::with_keys::<E, S, F>(f, Some(Arc::new(keys)))
    }

    fn with_keys<E, S, F>(f: F, keys: Option<KeyFn<E>>) -> Self
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
        let key_function = keys.is_some();
        let rekey: ErasedRekey = Arc::new(move |ctx, datum, schema, field| {
            let event = serde_avro_fast::from_datum_slice::<E>(datum, schema)
                .map_err(|e| InvokeError::Decode { event: E::NAME, message: e.to_string() })?;
            let keys = match (field, &keys) {
                (Some(field), _) => vec![field_key(&event, field)?],
                (None, Some(keys)) => keys(ctx, &event)?,
                (None, None) => {
                    return Err(InvokeError::Handler(FnError::permanent(format!(
                        "the fold of {} has no key function and no group_by field",
                        ctx.function
                    ))))
                }
            };
            // One decoded event, shared by every key it is written under.
            let event = Arc::new(event);
            let events = keys
                .into_iter()
                .map(|key| Emitted {
                    output: std::borrow::Cow::Borrowed(REPARTITION_OUTPUT),
                    key: Some(Bytes::from(key)),
                    value: Box::new(SharedEvent(event.clone())),
                    headers: Vec::new(),
                })
                .collect();
            Ok(Emit { events })
        });
        Self { input: E::NAME, state: S::NAME, fold, decode_row, rekey, key_function }
    }
}

/// The grouping key of `event` from its field `field` (a string, long or int,
/// as validation checked against the topic's schema).
fn field_key<E: Event>(event: &E, field: &str) -> Result<String, InvokeError> {
    let missing = |message: String| InvokeError::Handler(FnError::permanent(message));
    let value = serde_json::to_value(event).map_err(|e| missing(format!("cannot read {}: {e}", E::NAME)))?;
    match value.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(other) => {
            Err(missing(format!("group_by field {field:?} of {} is {other}, not a string or number", E::NAME)))
        }
        None => Err(missing(format!("{} has no field {field:?} to group by", E::NAME))),
    }
}

/// An event shared among the records it is written as.
struct SharedEvent<E>(Arc<E>);

impl<E: Event> ErasedEvent for SharedEvent<E> {
    fn name(&self) -> &'static str {
        E::NAME
    }
    fn encode(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut config = serde_avro_fast::ser::SerializerConfig::new(schema);
        let buf = std::mem::take(out);
        match serde_avro_fast::to_datum(self.0.as_ref(), buf, &mut config) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(e) => Err(EncodeError { event: E::NAME, message: e.to_string() }),
        }
    }
    fn debug(&self) -> String {
        // Events need not be Debug to be folded; their serde form says as much.
        serde_json::to_string(self.0.as_ref()).unwrap_or_else(|e| format!("<{}: {e}>", E::NAME))
    }
}
