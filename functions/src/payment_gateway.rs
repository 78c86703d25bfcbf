//! A deterministic payment-gateway simulator with an idempotent charge ledger.
//!
//! Rules, so tests and demos can provoke every outcome:
//! - a customer id starting with `declined-` is declined (`CARD_DECLINED`);
//! - an amount above [`AMOUNT_LIMIT`] is declined (`AMOUNT_LIMIT_EXCEEDED`);
//! - a customer id starting with `flaky-` makes the gateway unavailable on
//!   attempts 1 and 2 and succeed on attempt 3 (see [`FLAKY_ATTEMPTS`]);
//! - anything else is charged.
//!
//! Charges are idempotent by order id, as a real gateway's are by the
//! idempotency key the caller sends (Stripe's `Idempotency-Key`, Adyen's
//! `idempotencyKey`): the payment function passes the order id as that key,
//! so a redelivered or retried order returns the first charge's id and the
//! customer is charged once. The ledger lives in this process
//! (`std::sync::Mutex<HashMap>`), which is enough for one process and for
//! tests; a real gateway keeps it on its side.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use rust_decimal::Decimal;

use crate::events::PaymentFailureReason;

/// The largest amount one charge may be: 5000.00.
pub const AMOUNT_LIMIT: Decimal = Decimal::from_parts(500_000, 0, 0, false, 2);

/// How many attempts fail transiently for a `flaky-` customer before one succeeds.
pub const FLAKY_ATTEMPTS: u32 = 2;

/// What the gateway answered to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The amount was charged (now or by an earlier call for the same order).
    Charged {
        /// The charge's id, the same for every call for the order.
        payment_id: String,
    },
    /// The charge was refused; trying again will not change that.
    Declined {
        /// The decline code.
        reason: PaymentFailureReason,
        /// The decline in words.
        message: String,
    },
}

/// The gateway could not answer; a later attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The gateway is (simulated to be) down.
    #[error("payment gateway unavailable for order {order_id} on attempt {attempt}; retry later")]
    Unavailable {
        /// The order being charged.
        order_id: String,
        /// The attempt that failed.
        attempt: u32,
    },
}

#[derive(Debug, Default)]
struct LedgerEntry {
    payment_id: Option<String>,
    calls: u32,
}

fn ledger() -> MutexGuard<'static, HashMap<String, LedgerEntry>> {
    static LEDGER: OnceLock<Mutex<HashMap<String, LedgerEntry>>> = OnceLock::new();
    // A panic while holding the lock cannot leave an entry half-written (each
    // update is one assignment), so a poisoned ledger is still consistent.
    LEDGER.get_or_init(Mutex::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Charges `amount` to `customer_id` for `order_id` (the idempotency key).
///
/// `attempt` is the runtime's attempt number (from 1); only the `flaky-`
/// rule looks at it.
pub fn charge(order_id: &str, customer_id: &str, amount: Decimal, attempt: u32) -> Result<ChargeOutcome, GatewayError> {
    let mut ledger = ledger();
    let entry = ledger.entry(order_id.to_owned()).or_default();
    entry.calls += 1;
    if let Some(payment_id) = &entry.payment_id {
        return Ok(ChargeOutcome::Charged { payment_id: payment_id.clone() });
    }
    if customer_id.starts_with("flaky-") && attempt <= FLAKY_ATTEMPTS {
        return Err(GatewayError::Unavailable { order_id: order_id.to_owned(), attempt });
    }
    if customer_id.starts_with("declined-") {
        let message = format!("the card of customer {customer_id} was declined");
        return Ok(ChargeOutcome::Declined { reason: PaymentFailureReason::CardDeclined, message });
    }
    if amount > AMOUNT_LIMIT {
        let message = format!("amount {amount} is above the limit of {AMOUNT_LIMIT} per charge");
        return Ok(ChargeOutcome::Declined { reason: PaymentFailureReason::AmountLimitExceeded, message });
    }
    let payment_id = format!("pay-{}", uuid::Uuid::new_v4().simple());
    entry.payment_id = Some(payment_id.clone());
    Ok(ChargeOutcome::Charged { payment_id })
}

/// How many times `order_id` was actually charged: 0 or 1, however often it was asked.
pub fn charges_for(order_id: &str) -> u32 {
    ledger().get(order_id).map_or(0, |e| u32::from(e.payment_id.is_some()))
}

/// How many times the gateway was called for `order_id`, failed calls included.
pub fn gateway_calls_for(order_id: &str) -> u32 {
    ledger().get(order_id).map_or(0, |e| e.calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::dec;

    // The ledger is process-wide and tests run in parallel: each test uses
    // its own order ids.

    #[test]
    fn a_second_charge_of_an_order_returns_the_first_and_charges_once() {
        let first = charge("gw-idem", "c-1", dec("10.00"), 1).unwrap();
        let again = charge("gw-idem", "c-1", dec("10.00"), 1).unwrap();
        assert!(matches!(&first, ChargeOutcome::Charged { payment_id } if payment_id.starts_with("pay-")));
        assert_eq!(first, again);
        assert_eq!(charges_for("gw-idem"), 1);
        assert_eq!(gateway_calls_for("gw-idem"), 2);
        let other = charge("gw-idem-2", "c-1", dec("10.00"), 1).unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn flaky_customers_fail_twice_then_succeed() {
        for attempt in 1..=FLAKY_ATTEMPTS {
            let err = charge("gw-flaky", "flaky-c", dec("1.00"), attempt).unwrap_err();
            assert_eq!(err, GatewayError::Unavailable { order_id: "gw-flaky".into(), attempt });
            assert_eq!(charges_for("gw-flaky"), 0);
        }
        let ok = charge("gw-flaky", "flaky-c", dec("1.00"), FLAKY_ATTEMPTS + 1).unwrap();
        assert!(matches!(ok, ChargeOutcome::Charged { .. }));
        assert_eq!(charges_for("gw-flaky"), 1);
        assert_eq!(gateway_calls_for("gw-flaky"), FLAKY_ATTEMPTS + 1);
    }

    #[test]
    fn declines_follow_the_rules_and_charge_nothing() {
        let declined = charge("gw-dec-1", "declined-c", dec("1.00"), 1).unwrap();
        assert!(matches!(declined, ChargeOutcome::Declined { reason: PaymentFailureReason::CardDeclined, .. }));
        assert!(matches!(charge("gw-dec-2", "c", AMOUNT_LIMIT, 1).unwrap(), ChargeOutcome::Charged { .. }));
        let over = charge("gw-dec-3", "c", dec("5000.01"), 1).unwrap();
        assert!(matches!(over, ChargeOutcome::Declined { reason: PaymentFailureReason::AmountLimitExceeded, .. }));
        assert_eq!(charges_for("gw-dec-1") + charges_for("gw-dec-3"), 0);
        assert_eq!(charges_for("never-seen"), 0);
        assert_eq!(gateway_calls_for("never-seen"), 0);
    }
}
