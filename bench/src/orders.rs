//! The benchmark's records: OrderCreated events of the reference system's
//! size (3 items), Confluent-framed Avro, and the JSON body of POST /orders.

use std::collections::BTreeMap;

use anyhow::Context;
use bytes::Bytes;
use kfn::avro::{register_topic_schema, OutputEncoder, RegistryClient};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn_functions::events::{OrderCreated, OrderItem};
use rust_decimal::Decimal;

use crate::stack::Stack;

/// Records per produce request when filling an input topic.
const CHUNK: usize = 2_000;

/// The `i`-th order: three lines of products the catalog has in stock.
pub fn order(i: usize) -> OrderCreated {
    let items = vec![
        OrderItem { product_id: "SKU-001".into(), quantity: 1 + (i % 3) as i32, unit_price: Decimal::new(1999, 2) },
        OrderItem { product_id: "SKU-008".into(), quantity: 2, unit_price: Decimal::new(499, 2) },
        OrderItem { product_id: "SKU-010".into(), quantity: 1, unit_price: Decimal::new(1250, 2) },
    ];
    let total = items.iter().map(|it| it.unit_price * Decimal::from(it.quantity)).sum();
    OrderCreated {
        order_id: format!("order-{i:08}"),
        customer_id: format!("customer-{}", i % 997),
        items,
        total_amount: total,
        shipping_address: "1 Main St, Springfield".into(),
        created_at: 1_700_000_000_000 + i as i64,
    }
}

/// The JSON body of POST /orders for an order like [`order`].
pub fn order_request_json(i: usize) -> String {
    serde_json::json!({
        "customer_id": format!("customer-{}", i % 997),
        "items": [
            {"product_id": "SKU-001", "quantity": 1 + i % 3, "unit_price": "19.99"},
            {"product_id": "SKU-008", "quantity": 2, "unit_price": "4.99"},
            {"product_id": "SKU-010", "quantity": 1, "unit_price": "12.50"},
        ],
        "shipping_address": "1 Main St, Springfield",
    })
    .to_string()
}

/// Writes `count` framed orders to `topic` (registering its schema), keyed by
/// order id, spread round-robin over `partitions`; returns the framed size of one value.
pub async fn fill_topic(stack: &Stack, topic: &str, partitions: i32, count: usize) -> anyhow::Result<usize> {
    let schema = std::fs::read_to_string(stack.order_schema()).context("reading the OrderCreated schema")?;
    let client = RegistryClient::new(&stack.registry_url, None)?;
    let (id, parsed) = register_topic_schema(&client, topic, &schema).await?;
    let encoder = OutputEncoder::new(topic, id, parsed);
    let producer = Producer::new(stack.cluster.clone(), ProducerConfig::default()).await?;
    let mut by_partition: BTreeMap<i32, Vec<ProducerRecord>> = BTreeMap::new();
    let mut size = 0;
    // Record timestamps of now: with the event's 2023 creation time Apache Kafka's 7-day retention
    // deleted the input's segments at its next check, five minutes into a run.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    for i in 0..count {
        let event = order(i);
        let mut value = Vec::new();
        encoder.encode(&event, &mut value)?;
        size = value.len();
        let key = Bytes::from(event.order_id.into_bytes());
        by_partition.entry((i % partitions as usize) as i32).or_default().push(ProducerRecord::new(
            Some(key),
            Some(Bytes::from(value)),
            now,
        ));
    }
    let sends = by_partition.into_iter().map(|(p, records)| {
        let producer = producer.clone();
        let tp = TopicPartition::new(topic, p);
        async move {
            let mut records = records;
            while !records.is_empty() {
                let rest = records.split_off(records.len().min(CHUNK));
                producer.send(&tp, records).await?;
                records = rest;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(sends).await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_has_three_lines_and_their_total() {
        let o = order(4);
        assert_eq!(o.items.len(), 3);
        assert_eq!(o.total_amount, Decimal::new(1999 * 2 + 499 * 2 + 1250, 2));
        let body: serde_json::Value = serde_json::from_str(&order_request_json(4)).expect("json");
        assert_eq!(body["items"].as_array().map(Vec::len), Some(3));
        assert_eq!(body["items"][0]["quantity"], 2);
    }
}
