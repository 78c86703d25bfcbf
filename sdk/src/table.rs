//! Tables a handler can look up: the latest row of every key of a compacted
//! topic, held whole by every replica (like Kafka Streams' GlobalKTable).
//!
//! A function declares its tables in functions.toml
//! (`tables = { catalog = "shop.products" }`); the runtime restores each one
//! before the function starts and keeps it current. A handler reads rows by
//! key, typed by serde:
//!
//! ```
//! use kfn_sdk::{Ctx, FnError, MemoryTable};
//! #[derive(serde::Deserialize)]
//! struct Product { price: String, stock: i32 }
//!
//! fn stock_of(ctx: &Ctx, id: &str) -> Result<i32, FnError> {
//!     let product: Option<Product> = ctx.table("catalog").get(id)?;
//!     Ok(product.map_or(0, |p| p.stock))
//! }
//!
//! // In a unit test, a table in memory stands for the topic.
//! let catalog = MemoryTable::default().with_row("SKU-001", serde_json::json!({"price": "19.99", "stock": 5}));
//! let ctx = Ctx::default().with_table("catalog", catalog);
//! assert_eq!(stock_of(&ctx, "SKU-001").unwrap(), 5);
//! assert_eq!(stock_of(&ctx, "SKU-404").unwrap(), 0);
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;

use crate::FnError;

/// What a table is to a handler: rows as JSON by key. The runtime's
/// materialized views implement it, and [`MemoryTable`] for tests.
pub trait TableLookup: Send + Sync {
    /// The topic the table is read from (for messages).
    fn topic(&self) -> &str;
    /// The latest row of `key`, or None when the key has none (never written, or deleted).
    fn row(&self, key: &str) -> Option<serde_json::Value>;
}

/// A shared table is a table (a test keeps its `Arc<MemoryTable>` to change rows).
impl<T: TableLookup + ?Sized> TableLookup for Arc<T> {
    fn topic(&self) -> &str {
        (**self).topic()
    }

    fn row(&self, key: &str) -> Option<serde_json::Value> {
        (**self).row(key)
    }
}

/// Why a table lookup failed. Both are permanent: a retry reads the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The function declares no table of this name in functions.toml.
    #[error("no table {name:?}: the function declares none by that name (`tables = {{ {name} = \"<topic>\" }}` in functions.toml)")]
    Undeclared {
        /// The name asked for.
        name: String,
    },
    /// The row is not of the type asked for.
    #[error("the row of key {key:?} in table {name:?} (topic {topic}) does not decode: {message}")]
    Decode {
        /// The table.
        name: String,
        /// Its topic.
        topic: String,
        /// The key.
        key: String,
        /// serde's message.
        message: String,
    },
}

impl From<TableError> for FnError {
    fn from(e: TableError) -> Self {
        FnError::permanent(e.to_string())
    }
}

/// The tables of a function, by the names functions.toml gives them.
///
/// Cheap to clone (one shared map): every invocation's context gets a copy.
#[derive(Clone, Default)]
pub struct Tables {
    tables: Arc<BTreeMap<String, Arc<dyn TableLookup>>>,
}

impl Tables {
    /// Adds (or replaces) the table `name`.
    pub fn insert(&mut self, name: impl Into<String>, table: Arc<dyn TableLookup>) {
        Arc::make_mut(&mut self.tables).insert(name.into(), table);
    }

    /// The table `name`, if declared.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn TableLookup>> {
        self.tables.get(name)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.tables.iter().map(|(name, t)| (name, t.topic()))).finish()
    }
}

/// One table as a handler sees it: [`Ctx::table`](crate::Ctx::table).
pub struct Table<'a> {
    name: &'a str,
    table: Option<&'a Arc<dyn TableLookup>>,
}

impl<'a> Table<'a> {
    pub(crate) fn new(name: &'a str, tables: &'a Tables) -> Self {
        Self { name, table: tables.get(name) }
    }

    /// The row of `key` decoded as `T` (serde from the row's JSON: a JSON
    /// topic's row, Debezium's `after`, or an Avro row), None when there is none.
    ///
    /// Err: the table is not declared, or the row is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TableError> {
        let Some(row) = self.get_json(key)? else { return Ok(None) };
        serde_json::from_value(row).map(Some).map_err(|e| TableError::Decode {
            name: self.name.to_string(),
            topic: self.table.map(|t| t.topic().to_string()).unwrap_or_default(),
            key: key.to_string(),
            message: e.to_string(),
        })
    }

    /// The row of `key` as JSON, None when there is none.
    pub fn get_json(&self, key: &str) -> Result<Option<serde_json::Value>, TableError> {
        let table = self.table.ok_or_else(|| TableError::Undeclared { name: self.name.to_string() })?;
        Ok(table.row(key))
    }
}

/// A table in memory: for unit tests of handlers that look rows up.
#[derive(Default)]
pub struct MemoryTable {
    topic: String,
    rows: RwLock<BTreeMap<String, serde_json::Value>>,
}

impl MemoryTable {
    /// An empty table standing for `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        Self { topic: topic.into(), rows: RwLock::default() }
    }

    /// The table with `row` at `key`.
    pub fn with_row(self, key: impl Into<String>, row: serde_json::Value) -> Self {
        self.put(key, row);
        self
    }

    /// Sets the row of `key`.
    pub fn put(&self, key: impl Into<String>, row: serde_json::Value) {
        self.rows.write().unwrap_or_else(|p| p.into_inner()).insert(key.into(), row);
    }

    /// Removes the row of `key`.
    pub fn remove(&self, key: &str) {
        self.rows.write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl TableLookup for MemoryTable {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn row(&self, key: &str) -> Option<serde_json::Value> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Ctx;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Product {
        price: String,
        stock: i32,
    }

    #[test]
    fn rows_are_typed_absent_keys_are_none_and_bad_rows_are_errors() {
        let table = MemoryTable::new("shop.products")
            .with_row("SKU-001", json!({"price": "19.99", "stock": 5, "name": "beans"}))
            .with_row("SKU-BAD", json!({"price": 3}));
        let ctx = Ctx::default().with_table("catalog", table);
        let catalog = ctx.table("catalog");
        assert_eq!(catalog.get::<Product>("SKU-001").unwrap(), Some(Product { price: "19.99".into(), stock: 5 }));
        assert_eq!(catalog.get::<Product>("SKU-404").unwrap(), None);
        let err = catalog.get::<Product>("SKU-BAD").unwrap_err();
        assert!(matches!(&err, TableError::Decode { topic, key, .. } if topic == "shop.products" && key == "SKU-BAD"));
        let err = FnError::from(err);
        assert_eq!(err.kind, crate::FnErrorKind::Permanent);
    }

    #[test]
    fn an_undeclared_table_is_a_permanent_error_naming_it() {
        let err = Ctx::default().table("catalog").get::<Product>("SKU-001").unwrap_err();
        assert_eq!(err, TableError::Undeclared { name: "catalog".into() });
        assert!(err.to_string().contains("tables = { catalog"), "{err}");
    }
}
