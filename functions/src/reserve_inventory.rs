//! `reserve_inventory`: sets stock aside for a paid order and orders its shipment.
//!
//! Reads `PaymentProcessed`; emits one `InventoryReserved` per order line on
//! output `reserved`, keyed by product_id (one product's reservations stay in
//! order, whichever orders they belong to), the same line as a
//! `StockReservation` row on output `stock` (a JSON topic that Debezium's JDBC
//! sink writes to PostgreSQL, where a trigger takes it off the product's
//! stock: the catalog validation reads then shows what is left), and one `ShipmentCreated` on
//! output `shipment`, keyed by order_id. Ids derive from the order id, so a
//! redelivered payment produces identical events that consumers can drop.

use kfn_sdk::{Ctx, Emit, FnError};

use crate::events::{InventoryReserved, PaymentProcessed, ShipmentCreated, ShipmentItem, StockReservation};

/// The id of the shipment of an order.
pub fn shipment_id(order_id: &str) -> String {
    format!("shp-{order_id}")
}

/// The `reserve_inventory` handler.
pub async fn reserve_inventory(ctx: Ctx, payment: PaymentProcessed) -> Result<Emit, FnError> {
    if payment.order_id.is_empty() || payment.items.is_empty() {
        let message = format!("payment {} has no order_id or no items: nothing to reserve or ship", payment.payment_id);
        return Err(FnError::permanent(message));
    }
    let now = kfn_sdk::now_ms();
    let mut emit = Emit::none();
    for (line, item) in payment.items.iter().enumerate() {
        let reserved = InventoryReserved {
            reservation_id: format!("{}/{line}", payment.order_id),
            product_id: item.product_id.clone(),
            order_id: payment.order_id.clone(),
            customer_id: payment.customer_id.clone(),
            quantity: item.quantity,
            unit_price: item.unit_price,
            reserved_at: now,
        };
        let stock = StockReservation {
            reservation_id: reserved.reservation_id.clone(),
            product_id: item.product_id.clone(),
            order_id: payment.order_id.clone(),
            quantity: item.quantity,
            reserved_at: now,
        };
        emit.push("reserved", item.product_id.clone(), reserved);
        emit.push("stock", item.product_id.clone(), stock);
    }
    let shipment = ShipmentCreated {
        shipment_id: shipment_id(&payment.order_id),
        order_id: payment.order_id.clone(),
        customer_id: payment.customer_id,
        items: payment
            .items
            .into_iter()
            .map(|item| ShipmentItem { product_id: item.product_id, quantity: item.quantity })
            .collect(),
        shipping_address: payment.shipping_address,
        created_at: now,
    };
    tracing::debug!(function = %ctx.function, order_id = %payment.order_id, lines = shipment.items.len(), "inventory reserved");
    emit.push("shipment", payment.order_id, shipment);
    Ok(emit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderItem;
    use crate::testing::{dec, emitted};

    fn payment(items: Vec<OrderItem>) -> PaymentProcessed {
        PaymentProcessed {
            order_id: "o-7".into(),
            customer_id: "c-7".into(),
            payment_id: "pay-7".into(),
            amount: items.iter().map(OrderItem::line_total).sum(),
            items,
            shipping_address: "7 Side St".into(),
            processed_at: 1,
        }
    }

    fn item(product_id: &str, quantity: i32, price: &str) -> OrderItem {
        OrderItem { product_id: product_id.into(), quantity, unit_price: dec(price) }
    }

    #[tokio::test]
    async fn one_reservation_per_line_keyed_by_product_and_one_shipment() {
        let p = payment(vec![item("SKU-001", 2, "19.99"), item("SKU-005", 1, "25.00")]);
        let emit = reserve_inventory(Ctx::default(), p).await.unwrap();
        assert_eq!(emit.events.len(), 5);
        let stock = emitted::<StockReservation>(&emit, "stock");
        let rows: Vec<_> = stock.iter().map(|(k, s)| (k.as_str(), s.reservation_id.as_str(), s.quantity)).collect();
        assert_eq!(rows, [("SKU-001", "o-7/0", 2), ("SKU-005", "o-7/1", 1)]);
        let reserved = emitted::<InventoryReserved>(&emit, "reserved");
        let keys: Vec<_> = reserved.iter().map(|(k, r)| (k.as_str(), r.quantity, r.unit_price)).collect();
        assert_eq!(keys, [("SKU-001", 2, dec("19.99")), ("SKU-005", 1, dec("25.00"))]);
        let ids: Vec<_> = reserved.iter().map(|(_, r)| r.reservation_id.as_str()).collect();
        assert_eq!(ids, ["o-7/0", "o-7/1"]);
        assert!(reserved.iter().all(|(_, r)| r.order_id == "o-7" && r.customer_id == "c-7"));

        let shipments = emitted::<ShipmentCreated>(&emit, "shipment");
        assert_eq!(shipments.len(), 1);
        let (key, s) = &shipments[0];
        assert_eq!((key.as_str(), s.shipment_id.as_str()), ("o-7", "shp-o-7"));
        assert_eq!(s.shipping_address, "7 Side St");
        let lines: Vec<_> = s.items.iter().map(|i| (i.product_id.as_str(), i.quantity)).collect();
        assert_eq!(lines, [("SKU-001", 2), ("SKU-005", 1)]);
    }

    #[tokio::test]
    async fn a_payment_without_items_is_a_permanent_failure() {
        let err = reserve_inventory(Ctx::default(), payment(vec![])).await.unwrap_err();
        assert_eq!(err.kind, kfn_sdk::FnErrorKind::Permanent);
        assert!(err.message.contains("pay-7"), "{}", err.message);
    }
}
