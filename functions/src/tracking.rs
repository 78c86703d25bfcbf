//! Order tracking: every order event becomes an [`OrderStatusChanged`], and
//! the `order_status` fold keeps each order's [`OrderStatus`].
//!
//! The order events live on seven topics with different partition counts, so
//! one rekey function `track` reads all seven (`inputs = [...]` in
//! functions.toml) and writes the change on output `changes`, keyed by
//! order_id, to one topic (`orders.status-changes`): the aggregate's input,
//! co-partitioned with its table `orders.status`. Its handler is one Rust
//! function per event type ([`created`], [`validated`], [`rejected`],
//! [`payment_processed`], [`payment_failed`], [`shipment_created`],
//! [`dispatched`]), all registered under the name `track`.
//!
//! Changes come from different topics and functions, so they may arrive out
//! of order: the fold inserts each one at its place in event time (`at`,
//! ties broken by [`OrderState::step`]) and ignores a change it already has
//! (a redelivery). A terminal status (rejected, payment_failed, dispatched)
//! is final: a change that sorts after it stays in the history but does not
//! replace the status.

use kfn_sdk::{AggCtx, Ctx, Emit, FnError};

use crate::events::{
    OrderCreated, OrderRejected, OrderState, OrderStatus, OrderStatusChanged, OrderValidated, PaymentFailed,
    PaymentProcessed, ShipmentCreated, ShipmentDispatched, StatusChange,
};

/// The change of `order_id` to `status` on output `changes`, keyed by order_id.
pub fn change(order_id: &str, status: OrderState, at: i64, detail: String) -> Result<Emit, FnError> {
    if order_id.is_empty() {
        return Err(FnError::permanent(format!("a {status} event without order_id cannot be tracked")));
    }
    let changed = OrderStatusChanged { order_id: order_id.to_owned(), status, at, detail };
    Ok(Emit::one("changes", order_id.to_owned(), changed))
}

/// The `track` handler for OrderCreated events.
pub async fn created(_ctx: Ctx, e: OrderCreated) -> Result<Emit, FnError> {
    let detail = format!("{} item(s), total {}, customer {}", e.items.len(), e.total_amount, e.customer_id);
    change(&e.order_id, OrderState::Created, e.created_at, detail)
}

/// The `track` handler for OrderValidated events.
pub async fn validated(_ctx: Ctx, e: OrderValidated) -> Result<Emit, FnError> {
    let detail = format!("products in stock, total {}", e.total_amount);
    change(&e.order_id, OrderState::Validated, e.validated_at, detail)
}

/// The `track` handler for OrderRejected events.
pub async fn rejected(_ctx: Ctx, e: OrderRejected) -> Result<Emit, FnError> {
    let detail = format!("{}: {}", e.reason, e.message);
    change(&e.order_id, OrderState::Rejected, e.rejected_at, detail)
}

/// The `track` handler for PaymentProcessed events.
pub async fn payment_processed(_ctx: Ctx, e: PaymentProcessed) -> Result<Emit, FnError> {
    let detail = format!("payment {} of {}", e.payment_id, e.amount);
    change(&e.order_id, OrderState::PaymentProcessed, e.processed_at, detail)
}

/// The `track` handler for PaymentFailed events.
pub async fn payment_failed(_ctx: Ctx, e: PaymentFailed) -> Result<Emit, FnError> {
    let detail = format!("{}: {}", e.reason, e.message);
    change(&e.order_id, OrderState::PaymentFailed, e.failed_at, detail)
}

/// The `track` handler for ShipmentCreated events.
pub async fn shipment_created(_ctx: Ctx, e: ShipmentCreated) -> Result<Emit, FnError> {
    let detail = format!("shipment {}", e.shipment_id);
    change(&e.order_id, OrderState::ShipmentCreated, e.created_at, detail)
}

/// The `track` handler for ShipmentDispatched events.
pub async fn dispatched(_ctx: Ctx, e: ShipmentDispatched) -> Result<Emit, FnError> {
    let detail = format!("shipment {} with {}, tracking number {}", e.shipment_id, e.carrier, e.tracking_number);
    change(&e.order_id, OrderState::Dispatched, e.dispatched_at, detail)
}

/// The `order_status` fold: inserts `change` into the order's history.
pub fn order_status(
    _ctx: &AggCtx,
    state: Option<OrderStatus>,
    change: OrderStatusChanged,
) -> Result<OrderStatus, FnError> {
    let mut status = state.unwrap_or_else(|| OrderStatus {
        order_id: change.order_id.clone(),
        status: change.status,
        history: Vec::new(),
    });
    if status.order_id != change.order_id {
        // The input is keyed by order_id: another order here is a bug upstream.
        return Err(FnError::permanent(format!(
            "a change of order {} was keyed as order {}",
            change.order_id, status.order_id
        )));
    }
    let entry = StatusChange { status: change.status, at: change.at, detail: change.detail };
    let place = |c: &StatusChange| (c.at, c.status.step());
    if status.history.iter().any(|c| c.status == entry.status && c.at == entry.at) {
        return Ok(status);
    }
    // After every change that sorts before it or with it: arrival order breaks full ties.
    let index = status.history.partition_point(|c| place(c) <= place(&entry));
    status.history.insert(index, entry);
    status.status = current(&status.history).unwrap_or(change.status);
    Ok(status)
}

/// The first terminal status in event time, else the last status.
fn current(history: &[StatusChange]) -> Option<OrderState> {
    history.iter().find(|c| c.status.is_terminal()).or_else(|| history.last()).map(|c| c.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{OrderItem, PaymentFailureReason, RejectionReason, ShipmentItem};
    use crate::testing::{dec, single};

    fn items() -> Vec<OrderItem> {
        vec![OrderItem { product_id: "SKU-001".into(), quantity: 2, unit_price: dec("19.99") }]
    }

    /// One event of each order topic for order o-1, at times 10, 20, ...
    async fn every_change() -> Vec<Emit> {
        let ctx = Ctx::default;
        vec![
            created(
                ctx(),
                OrderCreated {
                    order_id: "o-1".into(),
                    customer_id: "c-1".into(),
                    items: items(),
                    total_amount: dec("39.98"),
                    shipping_address: "1 Main St".into(),
                    created_at: 10,
                },
            )
            .await
            .unwrap(),
            validated(
                ctx(),
                OrderValidated {
                    order_id: "o-1".into(),
                    customer_id: "c-1".into(),
                    items: items(),
                    total_amount: dec("39.98"),
                    shipping_address: "1 Main St".into(),
                    created_at: 10,
                    validated_at: 20,
                },
            )
            .await
            .unwrap(),
            rejected(
                ctx(),
                OrderRejected {
                    order_id: "o-1".into(),
                    customer_id: "c-1".into(),
                    reason: RejectionReason::UnknownProduct,
                    message: "no such product".into(),
                    product_id: Some("SKU-404".into()),
                    total_amount: dec("1.00"),
                    rejected_at: 30,
                },
            )
            .await
            .unwrap(),
            payment_processed(
                ctx(),
                PaymentProcessed {
                    order_id: "o-1".into(),
                    customer_id: "c-1".into(),
                    payment_id: "pay-1".into(),
                    amount: dec("39.98"),
                    items: items(),
                    shipping_address: "1 Main St".into(),
                    processed_at: 40,
                },
            )
            .await
            .unwrap(),
            payment_failed(
                ctx(),
                PaymentFailed {
                    order_id: "o-1".into(),
                    customer_id: "c-1".into(),
                    amount: dec("39.98"),
                    reason: PaymentFailureReason::CardDeclined,
                    message: "declined".into(),
                    failed_at: 50,
                },
            )
            .await
            .unwrap(),
            shipment_created(
                ctx(),
                ShipmentCreated {
                    shipment_id: "shp-o-1".into(),
                    order_id: "o-1".into(),
                    customer_id: "c-1".into(),
                    items: vec![ShipmentItem { product_id: "SKU-001".into(), quantity: 2 }],
                    shipping_address: "1 Main St".into(),
                    created_at: 60,
                },
            )
            .await
            .unwrap(),
            dispatched(
                ctx(),
                ShipmentDispatched {
                    shipment_id: "shp-o-1".into(),
                    order_id: "o-1".into(),
                    customer_id: "c-1".into(),
                    carrier: "DHL".into(),
                    tracking_number: "DH0".into(),
                    dispatched_at: 70,
                },
            )
            .await
            .unwrap(),
        ]
    }

    fn changed(status: OrderState, at: i64) -> OrderStatusChanged {
        OrderStatusChanged { order_id: "o-1".into(), status, at, detail: status.to_string() }
    }

    fn fold_all(changes: impl IntoIterator<Item = OrderStatusChanged>) -> OrderStatus {
        let ctx = AggCtx {
            function: "tracking".into(),
            partition: 0,
            offset: 0,
            key: None,
            state_key: "o-1".into(),
            timestamp_ms: 0,
            window: None,
        };
        changes.into_iter().fold(None, |state, c| Some(order_status(&ctx, state, c).unwrap())).unwrap()
    }

    fn statuses(s: &OrderStatus) -> Vec<OrderState> {
        s.history.iter().map(|c| c.status).collect()
    }

    #[tokio::test]
    async fn every_order_event_becomes_a_change_keyed_by_order_id() {
        let emits = every_change().await;
        let changes: Vec<_> = emits.iter().map(|e| single::<OrderStatusChanged>(e, "changes")).collect();
        assert!(changes.iter().all(|(key, c)| key == "o-1" && c.order_id == "o-1"));
        let got: Vec<_> = changes.iter().map(|(_, c)| (c.status, c.at)).collect();
        let expected: Vec<_> =
            OrderState::ALL.iter().zip([10, 20, 30, 40, 50, 60, 70]).map(|(s, at)| (*s, at)).collect();
        assert_eq!(got, expected);
        let detail = |status| &changes.iter().find(|(_, c)| c.status == status).unwrap().1.detail;
        assert!(detail(OrderState::Rejected).contains("UNKNOWN_PRODUCT"));
        assert!(detail(OrderState::PaymentProcessed).contains("pay-1"));
        assert!(detail(OrderState::Dispatched).contains("DH0"));
    }

    #[test]
    fn an_event_without_order_id_is_a_permanent_failure() {
        let err = change("", OrderState::Created, 1, String::new()).unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }

    #[test]
    fn history_is_in_event_time_order_whatever_the_arrival_order() {
        use OrderState::*;
        let in_order = [
            changed(Created, 10),
            changed(Validated, 20),
            changed(PaymentProcessed, 30),
            changed(ShipmentCreated, 40),
            changed(Dispatched, 50),
        ];
        let expected = fold_all(in_order.clone());
        assert_eq!(expected.status, Dispatched);
        assert_eq!(statuses(&expected), [Created, Validated, PaymentProcessed, ShipmentCreated, Dispatched]);
        // Every rotation and the reverse arrive at the same row.
        for shift in 1..in_order.len() {
            let mut arrival = in_order.to_vec();
            arrival.rotate_left(shift);
            assert_eq!(fold_all(arrival.clone()), expected, "{arrival:?}");
        }
        assert_eq!(fold_all(in_order.iter().rev().cloned()), expected);
        // Before the terminal change arrives, the status is the latest in event time.
        let partial = fold_all([changed(Validated, 20), changed(Created, 10)]);
        assert_eq!(partial.status, Validated);
        assert_eq!(statuses(&partial), [Created, Validated]);
    }

    #[test]
    fn same_millisecond_changes_follow_the_state_machine() {
        use OrderState::*;
        let row = fold_all([changed(Validated, 5), changed(Created, 5)]);
        assert_eq!(statuses(&row), [Created, Validated]);
    }

    #[test]
    fn a_redelivered_change_is_folded_once() {
        use OrderState::*;
        let row = fold_all([changed(Created, 10), changed(Created, 10), changed(Validated, 20), changed(Created, 10)]);
        assert_eq!(statuses(&row), [Created, Validated]);
    }

    #[test]
    fn a_terminal_status_is_final() {
        use OrderState::*;
        // Clock skew: the rejection is stamped before a change that sorts after it.
        let row = fold_all([changed(Created, 10), changed(Rejected, 20), changed(Validated, 25)]);
        assert_eq!(row.status, Rejected);
        assert_eq!(statuses(&row), [Created, Rejected, Validated]);
        assert!(Rejected.is_terminal() && PaymentFailed.is_terminal() && Dispatched.is_terminal());
        assert!(!Created.is_terminal() && !ShipmentCreated.is_terminal());
    }

    #[test]
    fn a_change_of_another_order_is_refused() {
        let mut other = changed(OrderState::Validated, 20);
        other.order_id = "o-2".into();
        let ctx = AggCtx {
            function: "tracking".into(),
            partition: 0,
            offset: 0,
            key: None,
            state_key: "o-1".into(),
            timestamp_ms: 0,
            window: None,
        };
        let first = order_status(&ctx, None, changed(OrderState::Created, 10)).unwrap();
        let err = order_status(&ctx, Some(first), other).unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }
}
