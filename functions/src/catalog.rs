//! The product catalog validation checks orders against.
//!
//! Static on purpose: handlers are stateless, and a fixed catalog keeps the
//! system's behaviour reproducible in tests. Stock levels are the limit one
//! order may take of a product; nothing decrements them (that would be state,
//! which kfn keeps in declared aggregates, not in handlers).

use rust_decimal::Decimal;

/// One product for sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Catalog id, as orders name it.
    pub id: &'static str,
    /// Name for people.
    pub name: &'static str,
    /// Price of one unit, in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i32,
}

impl Product {
    /// Price of one unit.
    pub fn price(&self) -> Decimal {
        Decimal::new(self.price_cents, 2)
    }
}

/// Every product of the catalog.
#[rustfmt::skip] // a table reads better one product per line
pub const PRODUCTS: &[Product] = &[
    Product { id: "SKU-001", name: "Espresso beans 1 kg", price_cents: 1999, stock: 500 },
    Product { id: "SKU-002", name: "Burr grinder", price_cents: 12900, stock: 40 },
    Product { id: "SKU-003", name: "Milk frother", price_cents: 3450, stock: 120 },
    Product { id: "SKU-004", name: "Espresso machine", price_cents: 89900, stock: 15 },
    Product { id: "SKU-005", name: "Tamper", price_cents: 2500, stock: 200 },
    Product { id: "SKU-006", name: "Knock box", price_cents: 1875, stock: 80 },
    Product { id: "SKU-007", name: "Pour-over kettle", price_cents: 5990, stock: 60 },
    Product { id: "SKU-008", name: "Paper filters (100)", price_cents: 499, stock: 1000 },
    Product { id: "SKU-009", name: "Cup set of 6", price_cents: 3999, stock: 75 },
    Product { id: "SKU-010", name: "Descaler", price_cents: 1250, stock: 300 },
    Product { id: "SKU-011", name: "Commercial roaster", price_cents: 450000, stock: 3 },
    Product { id: "SKU-012", name: "Gift card", price_cents: 5000, stock: 10_000 },
];

/// The product with this id, if the catalog has it.
pub fn product(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_found() {
        for p in PRODUCTS {
            assert_eq!(product(p.id), Some(p));
            assert_eq!(PRODUCTS.iter().filter(|q| q.id == p.id).count(), 1, "{}", p.id);
            assert!(p.stock > 0 && p.price_cents > 0);
        }
        assert_eq!(product("SKU-404"), None);
    }

    #[test]
    fn prices_are_in_cents() {
        assert_eq!(product("SKU-001").unwrap().price(), "19.99".parse::<Decimal>().unwrap());
    }
}
