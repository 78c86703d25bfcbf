//! The order-processing system's handlers, run by kfn.
//!
//! An order flows through one function per stage; each reads its input
//! topics and names its outputs, which functions.toml maps to topics:
//!
//! | handler | input | outputs |
//! |---|---|---|
//! | `create_order` (HTTP `POST /orders`) | — | `created` → orders.created |
//! | `validate_order` | OrderCreated | `validated`, `rejected` |
//! | `process_payment` | OrderValidated | `processed`, `failed` |
//! | `reserve_inventory` | PaymentProcessed | `reserved` (per item, keyed by product_id), `stock` (per item, JSON rows for PostgreSQL), `shipment` |
//! | `order_view` | OrderCreated, OrderStatus | `view` (JSON half-rows of PostgreSQL's orders.orders) |
//! | `dispatch_shipment` | ShipmentCreated | `dispatched` |
//! | `notify` | OrderRejected, PaymentFailed, PaymentProcessed, ShipmentDispatched | `outbound` (keyed by customer_id) |
//! | `track` | the seven order events | `changes` (OrderStatusChanged) |
//!
//! and three aggregate folds: `order_status` ([`Registry::aggregate`],
//! OrderStatusChanged into OrderStatus, see [`tracking`]), and two with a key
//! function ([`Registry::aggregate_by`]; kfn repartitions orders.created by
//! its keys): `order_metrics` (OrderCreated into OrderMetrics per hour) and
//! `product_sales` (OrderCreated into ProductSales per product, see [`analytics`]).
//!
//! Every other output is keyed by order_id. The event types are in [`events`],
//! their schemas in `schemas/`.
//!
//! ```
//! let registry = kfn_functions::registry();
//! assert!(registry.contains("create_order"));
//! let validate = registry.topic_handler("validate_order").unwrap();
//! assert_eq!(validate.input, "com.tutorial.orders.OrderCreated");
//! ```

#![warn(missing_docs)]

pub mod analytics;
pub mod catalog;
pub mod dispatch_shipment;
pub mod events;
pub mod limits;
pub mod notify;
pub mod order_api;
pub mod order_view;
pub mod payment_gateway;
pub mod process_payment;
pub mod reserve_inventory;
pub mod tracking;
pub mod validate_order;

#[cfg(test)]
mod testing;

use kfn_sdk::Registry;

/// Every handler of the order system, by the name functions.toml uses.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry
        .http("create_order", order_api::create_order)
        .handler("validate_order", validate_order::validate_order)
        .handler("process_payment", process_payment::process_payment)
        .handler("reserve_inventory", reserve_inventory::reserve_inventory)
        .handler("order_view", order_view::order_created)
        .handler("order_view", order_view::order_status)
        .handler("dispatch_shipment", dispatch_shipment::dispatch_shipment)
        // One name, several event types: functions `notify` and `track` read several topics.
        .handler("notify", notify::rejected)
        .handler("notify", notify::payment_failed)
        .handler("notify", notify::payment_processed)
        .handler("notify", notify::dispatched)
        .handler("track", tracking::created)
        .handler("track", tracking::validated)
        .handler("track", tracking::rejected)
        .handler("track", tracking::payment_processed)
        .handler("track", tracking::payment_failed)
        .handler("track", tracking::shipment_created)
        .handler("track", tracking::dispatched)
        .aggregate("order_status", tracking::order_status)
        .aggregate_by("order_metrics", analytics::order_hour, analytics::order_metrics)
        .aggregate_by("product_sales", analytics::order_products, analytics::product_sales);
    registry
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use kfn_sdk::{Ctx, Event, InvokeError};

    use super::*;
    use crate::events::{OrderCreated, OrderItem, OrderValidated};
    use crate::testing::{dec, schema_of, single};

    #[test]
    fn every_handler_is_registered_with_its_input_type() {
        let r = registry();
        let topic: BTreeSet<_> = r.topic_names().collect();
        let expected = [
            ("validate_order", &["OrderCreated"][..]),
            ("process_payment", &["OrderValidated"]),
            ("reserve_inventory", &["PaymentProcessed"]),
            ("order_view", &["OrderCreated", "OrderStatus"]),
            ("dispatch_shipment", &["ShipmentCreated"]),
            ("notify", &["OrderRejected", "PaymentFailed", "PaymentProcessed", "ShipmentDispatched"]),
            (
                "track",
                &[
                    "OrderCreated",
                    "OrderValidated",
                    "OrderRejected",
                    "PaymentProcessed",
                    "PaymentFailed",
                    "ShipmentCreated",
                    "ShipmentDispatched",
                ],
            ),
        ];
        assert_eq!(topic, expected.iter().map(|(name, _)| *name).collect());
        for (name, inputs) in expected {
            let registered: Vec<_> = r.topic_handlers(name).iter().map(|h| h.input).collect();
            let inputs: Vec<_> = inputs.iter().map(|i| format!("com.tutorial.orders.{i}")).collect();
            assert_eq!(registered, inputs, "{name}");
            for input_name in registered {
                // Every input type has a schema file.
                assert!(events::schema_files().iter().any(|(n, _)| *n == input_name), "{input_name}");
            }
        }
        assert_eq!(r.http_names().collect::<Vec<_>>(), ["create_order"]);
        let folds = [
            ("order_metrics", "OrderCreated", "OrderMetrics", true),
            ("order_status", "OrderStatusChanged", "OrderStatus", false),
            ("product_sales", "OrderCreated", "ProductSales", true),
        ];
        assert_eq!(r.aggregate_names().collect::<Vec<_>>(), folds.map(|(name, _, _, _)| name));
        for (name, input, state, key_function) in folds {
            let fold = r.aggregate_handler(name).unwrap();
            assert_eq!(fold.key_function, key_function, "{name}");
            assert_eq!(fold.input, format!("com.tutorial.orders.{input}"));
            assert_eq!(fold.state, format!("com.tutorial.orders.{state}"));
            for event in [fold.input, fold.state] {
                assert!(events::schema_files().iter().any(|(n, _)| *n == event), "{event}");
            }
        }
    }

    #[tokio::test]
    async fn a_registered_handler_decodes_an_avro_record_and_runs() {
        let order = OrderCreated {
            order_id: "lib-1".into(),
            customer_id: "c-1".into(),
            items: vec![OrderItem { product_id: "SKU-002".into(), quantity: 1, unit_price: dec("129.00") }],
            total_amount: dec("129.00"),
            shipping_address: "1 Main St".into(),
            created_at: 5,
        };
        let schema = schema_of(OrderCreated::NAME);
        let datum =
            serde_avro_fast::to_datum_vec(&order, &mut serde_avro_fast::ser::SerializerConfig::new(&schema)).unwrap();
        let handler = registry().topic_handler("validate_order").unwrap().clone();
        let emit = (handler.call)(crate::testing::catalog_ctx(), &datum, &schema).await.unwrap();
        let (key, validated) = single::<OrderValidated>(&emit, "validated");
        assert_eq!((key.as_str(), validated.total_amount), ("lib-1", dec("129.00")));

        // Bytes that are not an OrderCreated are a decode error, not a handler call.
        let err = (handler.call)(Ctx::default(), &datum[..3], &schema).await.unwrap_err();
        assert!(matches!(err, InvokeError::Decode { event: OrderCreated::NAME, .. }), "{err:?}");
    }
}
