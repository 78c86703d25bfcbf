//! Tests of the Avro path that need no registry: the registry client's
//! URLs, errors and outages, the codec end to end, and schema evolution
//! through serde.

mod client;
mod codec;
mod evolution;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The text of `schemas/order_created.avsc`.
pub const ORDER_CREATED_AVSC: &str = include_str!("../../../../schemas/order_created.avsc");

/// A local mirror of `schemas/order_created.avsc` (the functions crate has its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub total_amount: Decimal,
    pub shipping_address: String,
    pub created_at: i64,
}

/// One line of [`OrderCreated`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price: Decimal,
}

impl kfn_sdk::Event for OrderCreated {
    const NAME: &'static str = "com.tutorial.orders.OrderCreated";
}

/// An OrderCreated of the size the benchmarks use: 3 items.
pub fn sample_order() -> OrderCreated {
    let item = |id: &str, quantity, price: &str| OrderItem {
        product_id: id.to_owned(),
        quantity,
        unit_price: price.parse().unwrap(),
    };
    OrderCreated {
        order_id: "7d0c6f9e-2a51-4d8e-9a39-0f2b1c3d4e5f".to_owned(),
        customer_id: "cust-0042".to_owned(),
        items: vec![item("sku-1", 2, "19.99"), item("sku-2", 1, "5.00"), item("sku-3", 3, "0.25")],
        total_amount: "45.73".parse().unwrap(),
        shipping_address: "1 Main St, Springfield".to_owned(),
        created_at: 1_735_689_600_123,
    }
}
