//! Helpers for the handlers' unit tests.
//!
//! Emitted events are type-erased, so tests read them back the way the runtime
//! would write them: encoded with the schema file of their type, then decoded.
//! That also proves every emitted event encodes with its `.avsc`.

use std::path::PathBuf;
use std::sync::Arc;

use kfn_sdk::{Ctx, Emit, Event, MemoryTable};
use rust_decimal::Decimal;

use crate::catalog::{self, Product};
use crate::events::schema_files;
use crate::validate_order::Products;

/// The catalog as PostgreSQL is seeded with (connect/sql/10-shop.sql), as a
/// table in memory of rows like Debezium's.
pub fn catalog_table() -> Arc<MemoryTable> {
    let sql = include_str!("../../connect/sql/10-shop.sql");
    let table = MemoryTable::new("shop.products");
    for row in kfn::dev::seed::sql_rows(sql, "shop.products").unwrap() {
        let id = row["product_id"].as_str().unwrap().to_string();
        table.put(id, row.into());
    }
    Arc::new(table)
}

/// A handler context whose `catalog` table is [`catalog_table`].
pub fn catalog_ctx() -> Ctx {
    Ctx::default().with_table(catalog::TABLE, catalog_table())
}

/// The seeded catalog's products by id.
pub fn catalog_products() -> Products {
    let ctx = catalog_ctx();
    (1..=12)
        .map(|n| format!("SKU-{n:03}"))
        .map(|id| {
            let product: Product = catalog::product(&ctx, &id).unwrap().unwrap();
            (id, product)
        })
        .collect()
}

/// A decimal from its text.
pub fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The parsed schema file of an event type.
pub fn schema_of(name: &str) -> serde_avro_fast::Schema {
    let (_, file) = schema_files().iter().find(|(n, _)| *n == name).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas").join(file);
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

/// The keys and events emitted on `output`, which must all be of type `E`.
pub fn emitted<E: Event>(emit: &Emit, output: &str) -> Vec<(String, E)> {
    let schema = schema_of(E::NAME);
    emit.events
        .iter()
        .filter(|e| e.output == output)
        .map(|e| {
            assert_eq!(e.value.name(), E::NAME, "output {output}");
            let mut datum = Vec::new();
            e.value.encode(&schema, &mut datum).unwrap();
            let event = serde_avro_fast::from_datum_slice(&datum, &schema).unwrap();
            let key = String::from_utf8(e.key.as_deref().unwrap().to_vec()).unwrap();
            (key, event)
        })
        .collect()
}

/// The key and event of an emit that holds exactly one event, on `output`.
pub fn single<E: Event>(emit: &Emit, output: &str) -> (String, E) {
    assert_eq!(emit.events.len(), 1, "{emit:?}");
    emitted(emit, output).pop().unwrap_or_else(|| panic!("nothing on {output}: {emit:?}"))
}
