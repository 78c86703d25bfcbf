//! The product catalog as validation reads it: the table `catalog`, which
//! functions.toml maps to the compacted topic `shop.products`.
//!
//! The catalog lives in PostgreSQL (`shop.products`, seeded by
//! `connect/sql/10-shop.sql`); Debezium captures each change into the topic,
//! and kfn keeps every replica's copy of the table current (docs/connect.md).
//! `kfn dev` without `--connect` writes the same seed to the topic itself.
//! Nothing here holds products: a price or stock changed in PostgreSQL is what
//! the next order is checked against.
//!
//! ```
//! use kfn_sdk::{Ctx, MemoryTable};
//! let table = MemoryTable::new("shop.products").with_row(
//!     "SKU-001",
//!     serde_json::json!({"product_id": "SKU-001", "name": "Beans", "price": "19.99", "stock": 500, "updated_at": "2026-01-01T00:00:00Z"}),
//! );
//! let ctx = Ctx::default().with_table(kfn_functions::catalog::TABLE, table);
//! let beans = kfn_functions::catalog::product(&ctx, "SKU-001").unwrap().unwrap();
//! assert_eq!(beans.price.to_string(), "19.99");
//! assert_eq!(kfn_functions::catalog::product(&ctx, "SKU-404").unwrap(), None);
//! ```

use kfn_sdk::{Ctx, TableError};
use rust_decimal::Decimal;
use serde::Deserialize;

/// The name functions.toml gives the catalog table (`tables = { catalog = "shop.products" }`).
pub const TABLE: &str = "catalog";

/// One product for sale: a row of PostgreSQL's `shop.products` (other columns are not read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Product {
    /// Catalog id, as orders name it.
    pub product_id: String,
    /// Name for people.
    pub name: String,
    /// Price of one unit (Debezium sends `numeric` as text: `"19.99"`).
    pub price: Decimal,
    /// Units in stock.
    pub stock: i32,
}

/// The product with this id, None when the catalog has none (never had, or deleted).
///
/// Err: the function declares no `catalog` table, or its row is not a product.
pub fn product(ctx: &Ctx, id: &str) -> Result<Option<Product>, TableError> {
    ctx.table(TABLE).get(id)
}

#[cfg(test)]
mod tests {
    use kfn_sdk::MemoryTable;
    use serde_json::json;

    use super::*;
    use crate::testing::dec;

    #[test]
    fn a_debezium_row_decodes_with_its_decimal_price() {
        let row =
            json!({"product_id": "SKU-002", "name": "Grinder", "price": "129.00", "stock": 40, "updated_at": "x"});
        let ctx = Ctx::default().with_table(TABLE, MemoryTable::new("shop.products").with_row("SKU-002", row));
        let p = product(&ctx, "SKU-002").unwrap().unwrap();
        assert_eq!((p.price, p.stock), (dec("129.00"), 40));
    }

    #[test]
    fn a_row_that_is_not_a_product_is_an_error() {
        let row = json!({"product_id": "SKU-002", "price": "cheap"});
        let ctx = Ctx::default().with_table(TABLE, MemoryTable::new("shop.products").with_row("SKU-002", row));
        assert!(matches!(product(&ctx, "SKU-002"), Err(TableError::Decode { .. })));
    }
}
