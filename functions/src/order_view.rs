//! `order_view`: the rows analysts query in PostgreSQL's `orders.orders`.
//!
//! Reads `OrderCreated` (who ordered, the total) and `OrderStatus` (the
//! tracking aggregate's row: the current status); emits one [`OrderView`]
//! half-row per event on output `view` (the JSON topic `orders.view`), keyed
//! by order_id. Debezium's JDBC sink upserts each half into its own columns,
//! so the two halves meet in one row whichever arrives first, and a status
//! row replayed or redelivered writes the same values again.

use kfn_sdk::{Ctx, Emit, FnError};

use crate::events::{OrderCreated, OrderStatus, OrderView};

/// The half-row of a created order: customer and total.
pub async fn order_created(_ctx: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
    if order.order_id.is_empty() {
        return Err(FnError::permanent("the order has no order_id: no row to write"));
    }
    let view = OrderView {
        order_id: order.order_id.clone(),
        customer_id: Some(order.customer_id),
        total: Some(order.total_amount.to_string()),
        status: None,
        updated_at: None,
    };
    Ok(Emit::one("view", order.order_id, view))
}

/// The half-row of a status: the status and when the order entered it.
pub async fn order_status(_ctx: Ctx, row: OrderStatus) -> Result<Emit, FnError> {
    if row.order_id.is_empty() {
        return Err(FnError::permanent("the status row has no order_id: no row to write"));
    }
    // The status is the last in event time, or the terminal one: its own entry's time.
    let updated_at = row.history.iter().rev().find(|c| c.status == row.status).or(row.history.last()).map(|c| c.at);
    let view = OrderView {
        order_id: row.order_id.clone(),
        customer_id: None,
        total: None,
        status: Some(row.status.as_str().to_string()),
        updated_at,
    };
    Ok(Emit::one("view", row.order_id, view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{OrderItem, OrderState, StatusChange};
    use crate::testing::{dec, single};

    #[tokio::test]
    async fn a_created_order_fills_customer_and_total_only() {
        let order = OrderCreated {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: vec![OrderItem { product_id: "SKU-001".into(), quantity: 2, unit_price: dec("19.99") }],
            total_amount: dec("39.98"),
            shipping_address: "1 Main St".into(),
            created_at: 1,
        };
        let (key, view) = single::<OrderView>(&order_created(Ctx::default(), order).await.unwrap(), "view");
        assert_eq!(key, "o-1");
        assert_eq!((view.customer_id.as_deref(), view.total.as_deref()), (Some("c-1"), Some("39.98")));
        assert_eq!((view.status, view.updated_at), (None, None));
    }

    #[tokio::test]
    async fn a_status_row_fills_status_and_its_time_only() {
        let change = |status, at| StatusChange { status, at, detail: String::new() };
        let row = OrderStatus {
            order_id: "o-1".into(),
            status: OrderState::Dispatched,
            // A late change after the terminal status: the row keeps dispatched, at its own time.
            history: vec![
                change(OrderState::Created, 1),
                change(OrderState::Dispatched, 9),
                change(OrderState::Validated, 12),
            ],
        };
        let (_, view) = single::<OrderView>(&order_status(Ctx::default(), row).await.unwrap(), "view");
        assert_eq!((view.status.as_deref(), view.updated_at), (Some("dispatched"), Some(9)));
        assert_eq!((view.customer_id, view.total), (None, None));
    }
}
