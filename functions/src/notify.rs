//! `notify`: tells a customer what happened to their order.
//!
//! One function `notify` reads the four topics whose events concern the
//! customer (`inputs = [...]` in functions.toml); its handler is one Rust
//! function per event type, all registered under the name `notify`:
//! [`rejected`] (OrderRejected), [`payment_failed`] (PaymentFailed),
//! [`payment_processed`] (PaymentProcessed) and [`dispatched`]
//! (ShipmentDispatched). Each emits one `Notification` on output `outbound`,
//! keyed by customer_id so that one customer's messages stay in order.
//!
//! `notify` runs `guarantee = "exactly_once"`: each input record's
//! notification is committed in one transaction with the input's offset, so a
//! sender that reads `notifications.outbound` with read_committed sees each
//! notification once, even after a replica was killed mid-stream (see
//! docs/guarantees.md). The notification id (order id and kind) stays, for a
//! sender that reads uncommitted records or must survive its own redelivery
//! (e-mail and SMS gateways take it as their idempotency key).

use kfn_sdk::{Ctx, Emit, FnError};

use crate::events::{
    Notification, NotificationChannel, NotificationKind, OrderRejected, PaymentFailed, PaymentProcessed,
    ShipmentDispatched,
};

/// The notification of `kind` about `order_id` for `customer_id`.
///
/// Dispatch notices go by SMS because they are time-sensitive (someone should
/// be home); everything else goes by e-mail.
pub fn notification(
    customer_id: &str,
    order_id: &str,
    kind: NotificationKind,
    message: String,
) -> Result<Emit, FnError> {
    if customer_id.is_empty() || order_id.is_empty() {
        return Err(FnError::permanent(format!("a {kind} event without customer_id or order_id cannot be notified")));
    }
    let channel = match kind {
        NotificationKind::ShipmentDispatched => NotificationChannel::Sms,
        _ => NotificationChannel::Email,
    };
    let notification = Notification {
        notification_id: format!("{order_id}/{kind}"),
        customer_id: customer_id.to_owned(),
        order_id: order_id.to_owned(),
        channel,
        kind,
        message,
        created_at: kfn_sdk::now_ms(),
    };
    Ok(Emit::one("outbound", customer_id.to_owned(), notification))
}

/// The `notify` handler for OrderRejected events.
pub async fn rejected(_ctx: Ctx, e: OrderRejected) -> Result<Emit, FnError> {
    let message = format!("Your order {} could not be accepted: {}.", e.order_id, e.message);
    notification(&e.customer_id, &e.order_id, NotificationKind::OrderRejected, message)
}

/// The `notify` handler for PaymentFailed events.
pub async fn payment_failed(_ctx: Ctx, e: PaymentFailed) -> Result<Emit, FnError> {
    let message = format!("We could not charge {} for your order {}: {}.", e.amount, e.order_id, e.message);
    notification(&e.customer_id, &e.order_id, NotificationKind::PaymentFailed, message)
}

/// The `notify` handler for PaymentProcessed events.
pub async fn payment_processed(_ctx: Ctx, e: PaymentProcessed) -> Result<Emit, FnError> {
    let message = format!("We received your payment of {} for order {}; it is being prepared.", e.amount, e.order_id);
    notification(&e.customer_id, &e.order_id, NotificationKind::PaymentConfirmed, message)
}

/// The `notify` handler for ShipmentDispatched events.
pub async fn dispatched(_ctx: Ctx, e: ShipmentDispatched) -> Result<Emit, FnError> {
    let message =
        format!("Your order {} is on its way with {}, tracking number {}.", e.order_id, e.carrier, e.tracking_number);
    notification(&e.customer_id, &e.order_id, NotificationKind::ShipmentDispatched, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{PaymentFailureReason, RejectionReason};
    use crate::testing::{dec, single};

    fn check(emit: &Emit, kind: NotificationKind, channel: NotificationChannel, needle: &str) {
        let (key, n) = single::<Notification>(emit, "outbound");
        assert_eq!(key, "c-1");
        assert_eq!((n.customer_id.as_str(), n.order_id.as_str()), ("c-1", "o-1"));
        assert_eq!((n.kind, n.channel), (kind, channel));
        assert_eq!(n.notification_id, format!("o-1/{kind}"));
        assert!(n.message.contains("o-1") && n.message.contains(needle), "{}", n.message);
    }

    #[tokio::test]
    async fn each_event_becomes_one_notification_keyed_by_customer() {
        let rejected = OrderRejected {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            reason: RejectionReason::InsufficientStock,
            message: "4 units of SKU-011 ordered, 3 in stock".into(),
            product_id: Some("SKU-011".into()),
            total_amount: dec("18000.00"),
            rejected_at: 1,
        };
        let emit = super::rejected(Ctx::default(), rejected).await.unwrap();
        check(&emit, NotificationKind::OrderRejected, NotificationChannel::Email, "3 in stock");

        let failed = PaymentFailed {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            amount: dec("6000.00"),
            reason: PaymentFailureReason::AmountLimitExceeded,
            message: "over the limit".into(),
            failed_at: 1,
        };
        let emit = payment_failed(Ctx::default(), failed).await.unwrap();
        check(&emit, NotificationKind::PaymentFailed, NotificationChannel::Email, "6000.00");

        let processed = PaymentProcessed {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            payment_id: "pay-1".into(),
            amount: dec("19.99"),
            items: vec![],
            shipping_address: "1 Main St".into(),
            processed_at: 1,
        };
        let emit = payment_processed(Ctx::default(), processed).await.unwrap();
        check(&emit, NotificationKind::PaymentConfirmed, NotificationChannel::Email, "19.99");

        let dispatched = ShipmentDispatched {
            shipment_id: "shp-o-1".into(),
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            carrier: "UPS".into(),
            tracking_number: "UP0123".into(),
            dispatched_at: 1,
        };
        let emit = super::dispatched(Ctx::default(), dispatched).await.unwrap();
        check(&emit, NotificationKind::ShipmentDispatched, NotificationChannel::Sms, "UP0123");
    }

    #[test]
    fn an_event_without_customer_is_a_permanent_failure() {
        let err = notification("", "o-1", NotificationKind::PaymentFailed, String::new()).unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }
}
