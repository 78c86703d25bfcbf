//! `dispatch_shipment`: hands a created shipment to a carrier.
//!
//! Reads `ShipmentCreated`; emits `ShipmentDispatched` on output `dispatched`,
//! keyed by order_id. The carrier and tracking number derive from the shipment
//! id alone, so a redelivered shipment is dispatched identically.

use kfn_sdk::{Ctx, Emit, FnError};

use crate::events::{ShipmentCreated, ShipmentDispatched};

/// The carriers shipments are spread over.
pub const CARRIERS: &[&str] = &["DHL", "UPS", "PostNL"];

/// 64-bit FNV-1a: a stable hash (std's `DefaultHasher` may change between
/// Rust releases, and tracking numbers must not).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The carrier and tracking number of a shipment.
pub fn carrier_and_tracking(shipment_id: &str) -> (&'static str, String) {
    let hash = fnv1a(shipment_id);
    let len = CARRIERS.len() as u64;
    // The index is below CARRIERS.len(), so it fits usize.
    let carrier = CARRIERS[usize::try_from(hash % len).unwrap_or(0)];
    let prefix: String = carrier.chars().take(2).collect();
    (carrier, format!("{}{hash:016X}", prefix.to_ascii_uppercase()))
}

/// The `dispatch_shipment` handler.
pub async fn dispatch_shipment(ctx: Ctx, shipment: ShipmentCreated) -> Result<Emit, FnError> {
    if shipment.shipment_id.is_empty() || shipment.order_id.is_empty() {
        return Err(FnError::permanent("the shipment has no shipment_id or order_id"));
    }
    let (carrier, tracking_number) = carrier_and_tracking(&shipment.shipment_id);
    tracing::debug!(function = %ctx.function, order_id = %shipment.order_id, carrier, "shipment dispatched");
    let key = shipment.order_id.clone();
    let dispatched = ShipmentDispatched {
        shipment_id: shipment.shipment_id,
        order_id: shipment.order_id,
        customer_id: shipment.customer_id,
        carrier: carrier.to_owned(),
        tracking_number,
        dispatched_at: kfn_sdk::now_ms(),
    };
    Ok(Emit::one("dispatched", key, dispatched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ShipmentItem;
    use crate::testing::single;

    fn shipment(id: &str) -> ShipmentCreated {
        ShipmentCreated {
            shipment_id: id.into(),
            order_id: "o-9".into(),
            customer_id: "c-9".into(),
            items: vec![ShipmentItem { product_id: "SKU-001".into(), quantity: 1 }],
            shipping_address: "9 Dock Rd".into(),
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn dispatch_is_keyed_by_order_and_deterministic() {
        let first = dispatch_shipment(Ctx::default(), shipment("shp-o-9")).await.unwrap();
        let again = dispatch_shipment(Ctx::default(), shipment("shp-o-9")).await.unwrap();
        let (key, a) = single::<ShipmentDispatched>(&first, "dispatched");
        let (_, b) = single::<ShipmentDispatched>(&again, "dispatched");
        assert_eq!(key, "o-9");
        assert_eq!((a.shipment_id.as_str(), a.customer_id.as_str()), ("shp-o-9", "c-9"));
        assert_eq!((&a.carrier, &a.tracking_number), (&b.carrier, &b.tracking_number));
        assert!(CARRIERS.contains(&a.carrier.as_str()));
        assert_eq!(a.tracking_number.len(), 18);
    }

    #[test]
    fn shipments_spread_over_every_carrier() {
        let used: std::collections::BTreeSet<_> =
            (0..100).map(|i| carrier_and_tracking(&format!("shp-{i}")).0).collect();
        assert_eq!(used.len(), CARRIERS.len());
        // FNV-1a of the empty string is its offset basis: the hash is the standard one.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[tokio::test]
    async fn a_shipment_without_id_is_a_permanent_failure() {
        let err = dispatch_shipment(Ctx::default(), shipment("")).await.unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
    }
}
