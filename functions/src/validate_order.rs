//! `validate_order`: checks a new order against the catalog and the limits.
//!
//! The catalog is the function's table `catalog` (see [`crate::catalog`]):
//! prices and stock as PostgreSQL holds them now, not as compiled in.
//!
//! Reads `OrderCreated`; emits `OrderValidated` on output `validated` or
//! `OrderRejected` on output `rejected`, both keyed by order_id. A rejection is
//! an outcome, not a failure: the handler only fails (permanently) on a record
//! it cannot even key, one without an order_id.

use std::collections::BTreeMap;

use kfn_sdk::{Ctx, Emit, FnError};
use rust_decimal::Decimal;

use crate::catalog::{self, Product};
use crate::events::{OrderCreated, OrderRejected, OrderValidated, RejectionReason};
use crate::limits;

/// Why an order is rejected: the first rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The rule.
    pub reason: RejectionReason,
    /// The rule in words, with the values that broke it.
    pub message: String,
    /// The product it is about, if any.
    pub product_id: Option<String>,
}

impl Rejection {
    fn new(reason: RejectionReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), product_id: None }
    }

    fn about(reason: RejectionReason, product_id: &str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), product_id: Some(product_id.to_owned()) }
    }
}

/// The products of `catalog` that `order` names, by id (absent ids are not in the catalog).
pub type Products = BTreeMap<String, Product>;

/// Checks an order against `products` (the catalog rows of the products it
/// names), in a fixed order of rules so the reported reason is stable.
pub fn check(order: &OrderCreated, products: &Products) -> Result<(), Rejection> {
    use RejectionReason::*;
    if let Err(e) = limits::check_text(&order.customer_id, limits::MAX_ID_CHARS) {
        return Err(Rejection::new(InvalidField, format!("customer_id {e}")));
    }
    if let Err(e) = limits::check_text(&order.shipping_address, limits::MAX_ADDRESS_CHARS) {
        return Err(Rejection::new(InvalidField, format!("shipping_address {e}")));
    }
    if order.items.is_empty() {
        return Err(Rejection::new(EmptyOrder, "the order has no items"));
    }
    if order.items.len() > limits::MAX_ITEMS {
        let message = format!("the order has {} items, at most {} are allowed", order.items.len(), limits::MAX_ITEMS);
        return Err(Rejection::new(TooManyItems, message));
    }

    // Units per product over all lines: one product may appear on several lines.
    let mut units: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, item) in order.items.iter().enumerate() {
        let id = item.product_id.as_str();
        if !(1..=limits::MAX_QUANTITY).contains(&item.quantity) {
            let message = format!("items[{i}].quantity is {}, must be 1 to {}", item.quantity, limits::MAX_QUANTITY);
            return Err(Rejection::about(InvalidQuantity, id, message));
        }
        let Some(product) = products.get(id) else {
            return Err(Rejection::about(UnknownProduct, id, format!("items[{i}]: no product {id} in the catalog")));
        };
        if item.unit_price != product.price {
            let message = format!(
                "items[{i}]: unit price {} of {id} differs from the catalog's {}",
                item.unit_price, product.price
            );
            return Err(Rejection::about(PriceMismatch, id, message));
        }
        *units.entry(id).or_default() += i64::from(item.quantity);
    }
    for (id, wanted) in units {
        let stock = products.get(id).map_or(0, |p| p.stock);
        if wanted > i64::from(stock) {
            return Err(Rejection::about(
                InsufficientStock,
                id,
                format!("{wanted} units of {id} ordered, {stock} in stock"),
            ));
        }
    }

    if !limits::fits_amount(order.total_amount) {
        let message = format!("total_amount {} does not fit decimal(10,2) or is negative", order.total_amount);
        return Err(Rejection::new(TotalOutOfRange, message));
    }
    // Quantities and catalog prices are bounded, so this sum cannot overflow.
    let sum: Decimal = order.items.iter().map(|item| item.line_total()).sum();
    if sum != order.total_amount {
        let message = format!("total_amount {} is not the sum of the lines, {sum}", order.total_amount);
        return Err(Rejection::new(TotalMismatch, message));
    }
    Ok(())
}

/// The `validate_order` handler.
pub async fn validate_order(ctx: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
    if order.order_id.is_empty() {
        return Err(FnError::permanent("the order has no order_id, so it can be neither validated nor rejected"));
    }
    let key = order.order_id.clone();
    // Each distinct product once; the limits bound how many (MAX_ITEMS lines).
    let mut products = Products::new();
    for item in order.items.iter().take(limits::MAX_ITEMS) {
        if !products.contains_key(&item.product_id) {
            if let Some(product) = catalog::product(&ctx, &item.product_id)? {
                products.insert(item.product_id.clone(), product);
            }
        }
    }
    match check(&order, &products) {
        Ok(()) => {
            tracing::debug!(function = %ctx.function, order_id = %key, "order validated");
            let validated = OrderValidated {
                order_id: order.order_id,
                customer_id: order.customer_id,
                items: order.items,
                total_amount: order.total_amount,
                shipping_address: order.shipping_address,
                created_at: order.created_at,
                validated_at: kfn_sdk::now_ms(),
            };
            Ok(Emit::one("validated", key, validated))
        }
        Err(rejection) => {
            tracing::debug!(function = %ctx.function, order_id = %key, reason = %rejection.reason, "order rejected");
            let rejected = OrderRejected {
                order_id: order.order_id,
                customer_id: order.customer_id,
                reason: rejection.reason,
                message: rejection.message,
                product_id: rejection.product_id,
                total_amount: order.total_amount,
                rejected_at: kfn_sdk::now_ms(),
            };
            Ok(Emit::one("rejected", key, rejected))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderItem;
    use crate::testing::{catalog_ctx, catalog_products, dec, emitted, single};
    use serde_json::json;
    use RejectionReason::*;

    fn item(product_id: &str, quantity: i32) -> OrderItem {
        let unit_price = catalog_products().get(product_id).map_or(dec("1.00"), |p| p.price);
        OrderItem { product_id: product_id.into(), quantity, unit_price }
    }

    fn order(items: Vec<OrderItem>) -> OrderCreated {
        let total_amount = items.iter().map(OrderItem::line_total).sum();
        OrderCreated {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items,
            total_amount,
            shipping_address: "1 Main St".into(),
            created_at: 1_700_000_000_000,
        }
    }

    fn reason(order: &OrderCreated) -> RejectionReason {
        check(order, &catalog_products()).unwrap_err().reason
    }

    fn ok(order: &OrderCreated) -> bool {
        check(order, &catalog_products()).is_ok()
    }

    #[tokio::test]
    async fn a_good_order_is_validated_with_everything_payment_needs() {
        let o = order(vec![item("SKU-001", 2), item("SKU-003", 1)]);
        let emit = validate_order(catalog_ctx(), o.clone()).await.unwrap();
        let (key, v) = single::<OrderValidated>(&emit, "validated");
        assert_eq!(key, "o-1");
        assert_eq!(v.items, o.items);
        assert_eq!(v.total_amount, dec("74.48"));
        assert_eq!(v.shipping_address, o.shipping_address);
        assert_eq!(v.created_at, o.created_at);
        assert!(v.validated_at >= o.created_at);
    }

    #[tokio::test]
    async fn an_unknown_product_is_rejected_with_its_id() {
        let emit = validate_order(catalog_ctx(), order(vec![item("SKU-001", 1), item("SKU-404", 1)])).await.unwrap();
        assert!(emitted::<OrderValidated>(&emit, "validated").is_empty());
        let (key, r) = single::<OrderRejected>(&emit, "rejected");
        assert_eq!(key, "o-1");
        assert_eq!(r.reason, UnknownProduct);
        assert_eq!(r.product_id.as_deref(), Some("SKU-404"));
        assert!(r.message.contains("items[1]"), "{}", r.message);
    }

    #[test]
    fn stock_is_checked_over_all_lines_of_a_product() {
        assert!(ok(&order(vec![item("SKU-011", 3)])));
        assert_eq!(reason(&order(vec![item("SKU-011", 4)])), InsufficientStock);
        assert_eq!(reason(&order(vec![item("SKU-011", 2), item("SKU-011", 2)])), InsufficientStock);
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(reason(&order(vec![])), EmptyOrder);
        assert_eq!(reason(&order(vec![item("SKU-008", 1); limits::MAX_ITEMS + 1])), TooManyItems);
        assert!(ok(&order(vec![item("SKU-008", 1); limits::MAX_ITEMS])));
        assert_eq!(reason(&order(vec![item("SKU-001", 0)])), InvalidQuantity);
        assert_eq!(reason(&order(vec![item("SKU-001", -3)])), InvalidQuantity);
        assert_eq!(reason(&order(vec![item("SKU-012", limits::MAX_QUANTITY + 1)])), InvalidQuantity);
        let mut o = order(vec![item("SKU-001", 1)]);
        o.customer_id = " ".into();
        assert_eq!(reason(&o), InvalidField);
        let mut o = order(vec![item("SKU-001", 1)]);
        o.shipping_address = "x".repeat(limits::MAX_ADDRESS_CHARS + 1);
        assert_eq!(reason(&o), InvalidField);
    }

    #[test]
    fn prices_and_totals_must_match_the_catalog() {
        let mut o = order(vec![item("SKU-001", 1)]);
        o.items[0].unit_price = dec("0.01");
        o.total_amount = dec("0.01");
        assert_eq!(reason(&o), PriceMismatch);
        let mut o = order(vec![item("SKU-001", 2)]);
        o.total_amount = dec("19.99");
        assert_eq!(reason(&o), TotalMismatch);
        o.total_amount = dec("100000000.00");
        assert_eq!(reason(&o), TotalOutOfRange);
        o.total_amount = dec("-39.98");
        assert_eq!(reason(&o), TotalOutOfRange);
        // Scale does not matter for equality: 39.980 is 39.98.
        o.total_amount = dec("39.980");
        assert!(ok(&o));
    }

    #[tokio::test]
    async fn the_table_decides_price_stock_and_existence_as_it_is_now() {
        let table = crate::testing::catalog_table();
        let ctx = Ctx::default().with_table(catalog::TABLE, table.clone());
        let o = order(vec![item("SKU-003", 5)]);
        assert!(
            emitted::<OrderValidated>(&validate_order(ctx.clone(), o.clone()).await.unwrap(), "validated").len() == 1
        );

        // A new price: the old one is a mismatch, the new one validates.
        table.put("SKU-003", json!({"product_id": "SKU-003", "name": "Milk frother", "price": "23.45", "stock": 4}));
        let (_, r) = single::<OrderRejected>(&validate_order(ctx.clone(), o).await.unwrap(), "rejected");
        assert_eq!(r.reason, PriceMismatch);
        let mut o = order(vec![OrderItem { product_id: "SKU-003".into(), quantity: 5, unit_price: dec("23.45") }]);
        let (_, r) = single::<OrderRejected>(&validate_order(ctx.clone(), o.clone()).await.unwrap(), "rejected");
        assert_eq!((r.reason, r.message.as_str()), (InsufficientStock, "5 units of SKU-003 ordered, 4 in stock"));
        o.items[0].quantity = 4;
        o.total_amount = dec("93.80");
        single::<OrderValidated>(&validate_order(ctx.clone(), o.clone()).await.unwrap(), "validated");

        // Deleted from the catalog: unknown.
        table.remove("SKU-003");
        let (_, r) = single::<OrderRejected>(&validate_order(ctx, o).await.unwrap(), "rejected");
        assert_eq!(r.reason, UnknownProduct);
    }

    #[tokio::test]
    async fn without_a_catalog_table_the_record_fails_permanently() {
        let err = validate_order(Ctx::default(), order(vec![item("SKU-001", 1)])).await.unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
        assert!(err.message.contains("no table \"catalog\""), "{}", err.message);
    }

    #[tokio::test]
    async fn an_order_without_id_is_a_permanent_failure() {
        let mut o = order(vec![item("SKU-001", 1)]);
        o.order_id.clear();
        let err = validate_order(catalog_ctx(), o).await.unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }
}
