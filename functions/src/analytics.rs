//! Order analytics, the two ksqlDB queries of the original system as kfn
//! aggregates.
//!
//! - Order metrics per hour: `orders_by_window` re-emits each `OrderCreated`
//!   on output `orders` keyed by the start of its hour (the record's event
//!   time), and the windowed fold `order_metrics` counts the orders of each
//!   1-hour window with their revenue and average value ([`OrderMetrics`]).
//!   Keying by the hour spreads the hours over the partitions while every
//!   order of one window lands on one partition: [`HOUR_MS`] must equal the
//!   aggregate's `window` in functions.toml.
//! - Top products: `sales_by_product` emits one [`ProductSale`] per line of
//!   an order on output `sales`, keyed by product_id, and the fold
//!   `product_sales` keeps each product's units and revenue ([`ProductSales`]).

use kfn_sdk::{AggCtx, Ctx, Emit, FnError};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::events::{OrderCreated, OrderMetrics, ProductSale, ProductSales};

/// The window of the order metrics, one hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the hour `timestamp_ms` falls in, ms since the epoch.
pub fn hour_start(timestamp_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(HOUR_MS)
}

/// The `orders_by_window` handler: the order again, keyed by its hour.
pub async fn orders_by_window(ctx: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
    // The aggregate windows by record timestamp, which the output inherits
    // from the input record: key by that same time, not by created_at.
    let key = hour_start(ctx.timestamp_ms).to_string();
    Ok(Emit::one("orders", key, order))
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

/// The `sales_by_product` handler: one sale per line, keyed by product_id.
pub async fn sales_by_product(_ctx: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
    let mut emit = Emit::none();
    for item in order.items {
        if item.product_id.is_empty() {
            return Err(FnError::permanent(format!("order {} has a line without product_id", order.order_id)));
        }
        let sale = ProductSale {
            order_id: order.order_id.clone(),
            product_id: item.product_id.clone(),
            quantity: item.quantity,
            unit_price: item.unit_price,
            sold_at: order.created_at,
        };
        emit.push("sales", item.product_id, sale);
    }
    Ok(emit)
}

/// The `product_sales` fold: adds a sale to its product's totals.
pub fn product_sales(_ctx: &AggCtx, state: Option<ProductSales>, sale: ProductSale) -> Result<ProductSales, FnError> {
    let mut totals = state.unwrap_or_else(|| ProductSales {
        product_id: sale.product_id.clone(),
        total_quantity: 0,
        total_revenue: Decimal::ZERO,
    });
    totals.total_quantity += i64::from(sale.quantity);
    totals.total_revenue += Decimal::from(sale.quantity) * sale.unit_price;
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use kfn_sdk::Window;

    use super::*;
    use crate::events::OrderItem;
    use crate::testing::{dec, emitted, single};

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

    fn agg_ctx(window: Option<Window>) -> AggCtx {
        AggCtx {
            function: "analytics".into(),
            partition: 0,
            offset: 0,
            key: None,
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

    #[tokio::test]
    async fn orders_are_keyed_by_the_hour_of_their_record() {
        let ctx = Ctx { timestamp_ms: 3 * HOUR_MS + 59_999, ..Ctx::default() };
        let emit = orders_by_window(ctx, order("o-1", &[("SKU-001", 1, "2.50")])).await.unwrap();
        let (key, again) = single::<OrderCreated>(&emit, "orders");
        assert_eq!(key, (3 * HOUR_MS).to_string());
        assert_eq!(again, order("o-1", &[("SKU-001", 1, "2.50")]));
    }

    #[test]
    fn metrics_count_sum_and_average_per_window() {
        let window = Window { start_ms: HOUR_MS, end_ms: 2 * HOUR_MS };
        let ctx = agg_ctx(Some(window));
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
        let err = order_metrics(&agg_ctx(None), None, order("o", &[])).unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }

    #[tokio::test]
    async fn every_line_is_a_sale_keyed_by_product() {
        let o = order("o-1", &[("SKU-001", 2, "19.99"), ("SKU-002", 1, "5.00"), ("SKU-001", 1, "19.99")]);
        let emit = sales_by_product(Ctx::default(), o).await.unwrap();
        let sales = emitted::<ProductSale>(&emit, "sales");
        let keys: Vec<_> = sales.iter().map(|(k, s)| (k.as_str(), s.quantity)).collect();
        assert_eq!(keys, [("SKU-001", 2), ("SKU-002", 1), ("SKU-001", 1)]);
        assert!(sales.iter().all(|(k, s)| *k == s.product_id && s.order_id == "o-1" && s.sold_at == 7));

        let empty = sales_by_product(Ctx::default(), order("o-2", &[])).await.unwrap();
        assert!(empty.is_empty());
        let err = sales_by_product(Ctx::default(), order("o-3", &[("", 1, "1.00")])).await.unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }

    #[test]
    fn product_sales_add_units_and_revenue() {
        let ctx = agg_ctx(None);
        let sale = |quantity, price: &str| ProductSale {
            order_id: "o".into(),
            product_id: "SKU-001".into(),
            quantity,
            unit_price: dec(price),
            sold_at: 0,
        };
        let first = product_sales(&ctx, None, sale(2, "19.99")).unwrap();
        let second = product_sales(&ctx, Some(first), sale(3, "0.05")).unwrap();
        assert_eq!(
            second,
            ProductSales { product_id: "SKU-001".into(), total_quantity: 5, total_revenue: dec("40.13") }
        );
    }
}
