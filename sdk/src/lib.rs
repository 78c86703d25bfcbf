//! The handler API of kfn: what a function sees and returns.
//!
//! A handler is a plain async function that takes a [`Ctx`] and a typed event
//! and returns an [`Emit`] (events for the outputs declared in functions.toml)
//! or a [`FnError`] that says whether a retry can help. Handlers never name a
//! topic: they name an *output*, and functions.toml maps it to a topic. One
//! handler name may cover several event types, for a function that reads
//! several topics (see [`Registry`]).
//!
//! ```
//! use kfn_sdk::{Ctx, Emit, Event, FnError, Registry};
//! # #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! # struct Order { order_id: String }
//! # impl Event for Order { const NAME: &'static str = "Order"; }
//! async fn validate(ctx: Ctx, order: Order) -> Result<Emit, FnError> {
//!     if order.order_id.is_empty() {
//!         return Err(FnError::permanent("order_id is empty"));
//!     }
//!     let key = order.order_id.clone();
//!     Ok(Emit::one("validated", key, order))
//! }
//! let mut registry = Registry::default();
//! registry.handler("validate_order", validate);
//! assert!(registry.contains("validate_order"));
//! ```

#![warn(missing_docs)]

mod aggregate;
mod emit;
mod error;
mod http;
mod registry;
mod table;

pub use aggregate::{
    AggCtx, AggregateHandler, ErasedFold, ErasedRekey, ErasedRowDecode, Row, SharedRow, TableRow, Window,
    REPARTITION_OUTPUT,
};
pub use emit::{Emit, Emitted, EncodeError, ErasedEvent, Header};
pub use error::{FnError, FnErrorKind};
pub use http::{HttpReply, HttpRequest};
pub use registry::{BoxFuture, ErasedHandler, ErasedHttp, ErasedJsonHandler, InvokeError, Registry, TopicHandler};
pub use table::{MemoryTable, Table, TableError, TableLookup, Tables};

/// Now as a Kafka timestamp: milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An event type of the system: a serde type whose Avro schema has this full name.
pub trait Event: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The Avro full name of the record (namespace + name), checked against schemas/ at startup.
    const NAME: &'static str;
}

/// What a handler knows about the record it was given.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// The function's name from functions.toml.
    pub function: std::sync::Arc<str>,
    /// The topic the record was read from (empty for HTTP triggers).
    pub topic: std::sync::Arc<str>,
    /// The partition the record was read from.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's key, if any.
    pub key: Option<bytes::Bytes>,
    /// The record's timestamp in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Which attempt this is, starting at 1.
    pub attempt: u32,
    /// The record's headers.
    pub headers: Vec<Header>,
    /// The function's tables (`tables` in functions.toml), for [`Ctx::table`].
    pub tables: Tables,
}

impl Ctx {
    /// The key as UTF-8 text, if it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The table the function declares as `name` (`tables = { name = "topic" }`);
    /// an undeclared name gives a table whose lookups fail with [`TableError::Undeclared`].
    pub fn table<'a>(&'a self, name: &'a str) -> Table<'a> {
        Table::new(name, &self.tables)
    }

    /// The same context with `table` as `name` (for unit tests of handlers).
    pub fn with_table(mut self, name: &str, table: impl TableLookup + 'static) -> Self {
        self.tables.insert(name, std::sync::Arc::new(table));
        self
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name == name).and_then(|h| h.value.as_deref())
    }
}
