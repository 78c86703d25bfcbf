//! Order analytics, the two ksqlDB queries of the original system as kfn
//! aggregates that read orders.created directly: kfn regroups the orders by
//! the key each aggregate's key function gives (through its internal topic
//! `<function>.repartition`, see docs/configuration.md).
//!
//! - Order metrics per hour: [`order_hour`] keys each `OrderCreated` by the
//!   start of its hour (the record's event time), and the windowed fold
//!   `order_metrics` counts the orders of each 1-hour window with their
//!   revenue and average value ([`OrderMetrics`]). Keying by the hour spreads
//!   the hours over the partitions while every order of one window lands on
//!   one partition: [`HOUR_MS`] must equal the aggregate's `window` in
//!   functions.toml.
//! - Top products: [`order_products`] keys an order by each product it
//!   contains, and the fold `product_sales` adds the order's lines of that
//!   product to the product's units and revenue ([`ProductSales`]).

use kfn_sdk::{AggCtx, Ctx, FnError};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::events::{OrderCreated, OrderMetrics, ProductSales};

/// The window of the order metrics, one hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the hour `timestamp_ms` falls in, ms since the epoch.
pub fn hour_start(timestamp_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(HOUR_MS)
}

/// The key function of `order_metrics`: the start of the order's hour.
pub fn order_hour(ctx: &Ctx, _order: &OrderCreated) -> Result<Vec<String>, FnError> {
    // The aggregate windows by record timestamp, which the repartitioned
    // record keeps: key by that same time, not by created_at.
    Ok(vec![hour_start(ctx.timestamp_ms).to_string()])
}

/// The `order_metrics` fold: one more order in its window.
pub fn order_metrics(ctx: &AggCtx, state: Option<OrderMetrics>, order: OrderCreated) -> Result<OrderMetrics, FnError> {
    let Some(window) = ctx.window else {
        return Err(FnError::permanent(format!(
            "function {}: order_metrics needs a windowed aggregate (`window = \"1h\"`)",
            ctx.function
        )));
    };
    let mut metrics = state.unwrap_or(OrderMetrics {
        window_start: window.start_ms,
        window_end: window.end_ms,
        order_count: 0,
        total_revenue: Decimal::ZERO,
        avg_order_value: Decimal::ZERO,
    });
    metrics.order_count += 1;
    metrics.total_revenue += order.total_amount;
    metrics.avg_order_value = average(metrics.total_revenue, metrics.order_count);
    Ok(metrics)
}

/// `total / count` rounded half away from zero to cents; 0 when `count` is 0.
pub fn average(total: Decimal, count: i64) -> Decimal {
    if count == 0 {
        return Decimal::ZERO;
    }
    (total / Decimal::from(count)).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The key function of `product_sales`: each product of the order once, in
/// the order of its first line (two lines of one product are one key, whose
/// fold adds both).
pub fn order_products(_ctx: &Ctx, order: &OrderCreated) -> Result<Vec<String>, FnError> {
    let mut products: Vec<String> = Vec::with_capacity(order.items.len());
    for item in &order.items {
        if item.product_id.is_empty() {
            return Err(FnError::permanent(format!("order {} has a line without product_id", order.order_id)));
        }
        if !products.contains(&item.product_id) {
            products.push(item.product_id.clone());
        }
    }
    Ok(products)
}

/// The `product_sales` fold: adds the order's lines of the product it is
/// keyed by (`ctx.key`) to that product's totals.
pub fn product_sales(ctx: &AggCtx, state: Option<ProductSales>, order: OrderCreated) -> Result<ProductSales, FnError> {
    let Some(product_id) = ctx.key_str() else {
        return Err(FnError::permanent(format!("function {}: a sale without a product key", ctx.function)));
    };
    let mut totals = state.unwrap_or_else(|| ProductSales {
        product_id: product_id.to_string(),
        total_quantity: 0,
        total_revenue: Decimal::ZERO,
    });
    for item in order.items.iter().filter(|item| item.product_id == product_id) {
        totals.total_quantity += i64::from(item.quantity);
        totals.total_revenue += Decimal::from(item.quantity) * item.unit_price;
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use kfn_sdk::Window;

    use super::*;
    use crate::events::OrderItem;
    use crate::testing::dec;

    fn order(id: &str, items: &[(&str, i32, &str)]) -> OrderCreated {
        let items: Vec<OrderItem> = items
            .iter()
            .map(|(p, q, price)| OrderItem { product_id: (*p).into(), quantity: *q, unit_price: dec(price) })
            .collect();
        OrderCreated {
            order_id: id.into(),
            customer_id: "c-1".into(),
            total_amount: items.iter().map(OrderItem::line_total).sum(),
            items,
            shipping_address: "1 Main St".into(),
            created_at: 7,
        }
    }

    fn agg_ctx(window: Option<Window>, key: &str) -> AggCtx {
        AggCtx {
            function: "analytics".into(),
            partition: 0,
            offset: 0,
            key: Some(key.to_string().into()),
            state_key: "k".into(),
            timestamp_ms: 0,
            window,
        }
    }

    #[test]
    fn hours_start_on_the_hour_even_before_the_epoch() {
        assert_eq!(hour_start(0), 0);
        assert_eq!(hour_start(HOUR_MS - 1), 0);
        assert_eq!(hour_start(5 * HOUR_MS + 17), 5 * HOUR_MS);
        assert_eq!(hour_start(-1), -HOUR_MS);
    }

    #[test]
    fn orders_are_keyed_by_the_hour_of_their_record() {
        let ctx = Ctx { timestamp_ms: 3 * HOUR_MS + 59_999, ..Ctx::default() };
        let keys = order_hour(&ctx, &order("o-1", &[("SKU-001", 1, "2.50")])).unwrap();
        assert_eq!(keys, [(3 * HOUR_MS).to_string()]);
    }

    #[test]
    fn metrics_count_sum_and_average_per_window() {
        let window = Window { start_ms: HOUR_MS, end_ms: 2 * HOUR_MS };
        let ctx = agg_ctx(Some(window), &HOUR_MS.to_string());
        let totals = ["10.00", "20.00", "0.01"];
        let metrics = totals.iter().fold(None, |state, total| {
            let o = order("o", &[("SKU-001", 1, total)]);
            Some(order_metrics(&ctx, state, o).unwrap())
        });
        let m = metrics.unwrap();
        assert_eq!((m.window_start, m.window_end), (HOUR_MS, 2 * HOUR_MS));
        assert_eq!(m.order_count, 3);
        assert_eq!(m.total_revenue, dec("30.01"));
        // 10.003333… rounds to cents.
        assert_eq!(m.avg_order_value, dec("10.00"));
        assert_eq!(average(dec("0.05"), 2), dec("0.03"), "half away from zero");
        assert_eq!(average(dec("5"), 0), Decimal::ZERO);
    }

    #[test]
    fn metrics_without_a_window_are_a_permanent_failure() {
        let err = order_metrics(&agg_ctx(None, "0"), None, order("o", &[])).unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }

    #[test]
    fn an_order_is_keyed_by_each_of_its_products_once() {
        let o = order("o-1", &[("SKU-001", 2, "19.99"), ("SKU-002", 1, "5.00"), ("SKU-001", 1, "19.99")]);
        assert_eq!(order_products(&Ctx::default(), &o).unwrap(), ["SKU-001", "SKU-002"]);
        assert!(order_products(&Ctx::default(), &order("o-2", &[])).unwrap().is_empty());
        let err = order_products(&Ctx::default(), &order("o-3", &[("", 1, "1.00")])).unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }

    #[test]
    fn product_sales_add_the_lines_of_their_product() {
        let ctx = agg_ctx(None, "SKU-001");
        let first = order("o-1", &[("SKU-001", 2, "19.99"), ("SKU-002", 7, "5.00")]);
        let second = order("o-2", &[("SKU-001", 1, "0.05"), ("SKU-001", 2, "0.05")]);
        let totals = product_sales(&ctx, None, first).unwrap();
        let totals = product_sales(&ctx, Some(totals), second).unwrap();
        assert_eq!(
            totals,
            ProductSales { product_id: "SKU-001".into(), total_quantity: 5, total_revenue: dec("40.13") }
        );
        let mut keyless = ctx.clone();
        keyless.key = None;
        assert!(product_sales(&keyless, None, order("o", &[])).is_err());
    }
}
