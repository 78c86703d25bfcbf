//! `process_payment`: charges a validated order through the payment gateway.
//!
//! Reads `OrderValidated`; emits `PaymentProcessed` on output `processed` or
//! `PaymentFailed` on output `failed`, keyed by order_id. A gateway outage is
//! a retryable error, so the runtime retries by the function's policy; the
//! order id is the charge's idempotency key, so a retry or a redelivery after
//! a crash never charges twice (see [`crate::payment_gateway`]).

use kfn_sdk::{Ctx, Emit, FnError};

use crate::events::{OrderValidated, PaymentFailed, PaymentProcessed};
use crate::payment_gateway::{self, ChargeOutcome};

/// The `process_payment` handler.
pub async fn process_payment(ctx: Ctx, order: OrderValidated) -> Result<Emit, FnError> {
    if order.order_id.is_empty() {
        return Err(FnError::permanent("the order has no order_id, which the charge needs as its idempotency key"));
    }
    let outcome = payment_gateway::charge(&order.order_id, &order.customer_id, order.total_amount, ctx.attempt)
        .map_err(|e| FnError::retryable(e.to_string()))?;
    let key = order.order_id.clone();
    match outcome {
        ChargeOutcome::Charged { payment_id } => {
            tracing::debug!(function = %ctx.function, order_id = %key, %payment_id, "payment processed");
            let processed = PaymentProcessed {
                order_id: order.order_id,
                customer_id: order.customer_id,
                payment_id,
                amount: order.total_amount,
                items: order.items,
                shipping_address: order.shipping_address,
                processed_at: kfn_sdk::now_ms(),
            };
            Ok(Emit::one("processed", key, processed))
        }
        ChargeOutcome::Declined { reason, message } => {
            tracing::debug!(function = %ctx.function, order_id = %key, %reason, "payment declined");
            let failed = PaymentFailed {
                order_id: order.order_id,
                customer_id: order.customer_id,
                amount: order.total_amount,
                reason,
                message,
                failed_at: kfn_sdk::now_ms(),
            };
            Ok(Emit::one("failed", key, failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use kfn_sdk::FnErrorKind;

    use super::*;
    use crate::events::{OrderItem, PaymentFailureReason};
    use crate::payment_gateway::{charges_for, gateway_calls_for};
    use crate::testing::{dec, single};

    fn order(order_id: &str, customer_id: &str, total: &str) -> OrderValidated {
        OrderValidated {
            order_id: order_id.into(),
            customer_id: customer_id.into(),
            items: vec![OrderItem { product_id: "SKU-012".into(), quantity: 1, unit_price: dec(total) }],
            total_amount: dec(total),
            shipping_address: "1 Main St".into(),
            created_at: 1,
            validated_at: 2,
        }
    }

    fn attempt(n: u32) -> Ctx {
        Ctx { attempt: n, ..Ctx::default() }
    }

    #[tokio::test]
    async fn a_charged_order_carries_items_and_address_on() {
        let o = order("pp-ok", "c-1", "50.00");
        let emit = process_payment(attempt(1), o.clone()).await.unwrap();
        let (key, p) = single::<PaymentProcessed>(&emit, "processed");
        assert_eq!(key, "pp-ok");
        assert_eq!((p.amount, p.items, p.shipping_address), (o.total_amount, o.items, o.shipping_address));
        assert!(p.payment_id.starts_with("pay-"));
        assert_eq!(charges_for("pp-ok"), 1);
    }

    #[tokio::test]
    async fn a_redelivered_order_gets_the_same_payment_and_is_charged_once() {
        let first = process_payment(attempt(1), order("pp-redeliver", "c-1", "50.00")).await.unwrap();
        let again = process_payment(attempt(1), order("pp-redeliver", "c-1", "50.00")).await.unwrap();
        let (_, first) = single::<PaymentProcessed>(&first, "processed");
        let (_, again) = single::<PaymentProcessed>(&again, "processed");
        assert_eq!(first.payment_id, again.payment_id);
        assert_eq!(charges_for("pp-redeliver"), 1);
        assert_eq!(gateway_calls_for("pp-redeliver"), 2);
    }

    #[tokio::test]
    async fn a_flaky_gateway_is_retryable_until_the_third_attempt() {
        for n in 1..=2 {
            let err = process_payment(attempt(n), order("pp-flaky", "flaky-c", "50.00")).await.unwrap_err();
            assert_eq!(err.kind, FnErrorKind::Retryable);
            assert!(err.message.contains("pp-flaky"), "{}", err.message);
        }
        let emit = process_payment(attempt(3), order("pp-flaky", "flaky-c", "50.00")).await.unwrap();
        single::<PaymentProcessed>(&emit, "processed");
        assert_eq!(gateway_calls_for("pp-flaky"), 3);
        assert_eq!(charges_for("pp-flaky"), 1);
    }

    #[tokio::test]
    async fn declines_go_to_failed() {
        let emit = process_payment(attempt(1), order("pp-declined", "declined-c", "50.00")).await.unwrap();
        let (key, f) = single::<PaymentFailed>(&emit, "failed");
        assert_eq!((key.as_str(), f.reason), ("pp-declined", PaymentFailureReason::CardDeclined));
        let emit = process_payment(attempt(1), order("pp-limit", "c-1", "5000.01")).await.unwrap();
        let (_, f) = single::<PaymentFailed>(&emit, "failed");
        assert_eq!((f.reason, f.amount), (PaymentFailureReason::AmountLimitExceeded, dec("5000.01")));
        assert_eq!(charges_for("pp-declined") + charges_for("pp-limit"), 0);
    }
}
