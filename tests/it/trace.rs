//! One order's W3C trace id on every hop: the `traceparent` of POST /orders is
//! continued on the order's record in every topic it crosses, each hop with a
//! parent id of its own: the span of the invocation that wrote it, which all
//! the outputs of one invocation share (tests/it/otlp.rs reads those spans).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use kfn::trace::{TraceParent, TRACEPARENT};
use kfn_tests::order_system::{request, OrderSystem};

use crate::order_system::ONE_AT_A_TIME;

/// Every topic an accepted, paid, dispatched order crosses, and the key its records carry there.
const HOPS: &[(&str, Key)] = &[
    ("orders.created", Key::Order),
    ("orders.validated", Key::Order),
    ("payments.processed", Key::Order),
    ("shipments.created", Key::Order),
    ("shipments.dispatched", Key::Order),
    ("orders.status-changes", Key::Order),
    ("notifications.outbound", Key::Customer),
    ("inventory.reserved", Key::Product),
];

#[derive(Clone, Copy)]
enum Key {
    Order,
    Customer,
    Product,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_orders_trace_id_is_on_every_hop() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    let system = OrderSystem::start(binary, 1).await.expect("the order system starts");
    let http = system.http[0];

    let incoming = TraceParent::root();
    let customer = kfn_tests::unique("traced");
    let body = format!(
        r#"{{"customer_id":"{customer}","items":[{{"product_id":"SKU-001","quantity":1,"unit_price":"19.99"}}],"shipping_address":"1 Main St"}}"#
    );
    let header = incoming.to_header();
    let headers = [("Content-Type", "application/json"), (TRACEPARENT, header.as_str())];
    let (status, answer) = request(http, "POST", "/orders", &headers, body.as_bytes()).await.expect("POST /orders");
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let order_id = answer["order_id"].as_str().expect("order_id").to_string();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, status) = request(http, "GET", &format!("/orders/{order_id}"), &[], b"").await.expect("GET");
        if status.contains("\"status\":\"dispatched\"") {
            break;
        }
        assert!(!status.contains("\"status\":\"rejected\""), "order {order_id} was rejected: {status}");
        assert!(Instant::now() < deadline, "order {order_id} not dispatched within 120 s: {status}");
        // The status table has no change notification over HTTP: poll it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut parents = BTreeSet::new();
    let mut by_topic = std::collections::HashMap::new();
    for (topic, key) in HOPS {
        let deadline = Instant::now() + Duration::from_secs(60);
        let traced = loop {
            let records = system.read(topic).await.expect("read");
            let ours: Vec<_> = records
                .into_iter()
                .filter(|r| {
                    let key_text = r.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                    match key {
                        Key::Order => key_text == order_id,
                        Key::Customer => key_text == customer,
                        Key::Product => key_text == "SKU-001",
                    }
                })
                .filter_map(|r| {
                    let value = r.headers.iter().find(|h| h.name == TRACEPARENT)?.value.clone()?;
                    TraceParent::parse(std::str::from_utf8(&value).ok()?)
                })
                .filter(|t| t.trace_id == incoming.trace_id)
                .collect();
            if !ours.is_empty() {
                break ours;
            }
            assert!(Instant::now() < deadline, "{topic}: no record of order {order_id} with trace {header}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        by_topic.insert(*topic, traced.iter().map(|t| t.parent_id).collect::<BTreeSet<_>>());
        for t in traced {
            assert_ne!(t.parent_id, incoming.parent_id, "{topic}: a hop keeps the caller's parent id");
            parents.insert(t.parent_id);
        }
    }
    assert!(parents.len() >= HOPS.len(), "each hop has a parent id of its own: {parents:?}");
    // inventory writes both for one payment: one invocation, one span, the parent of both.
    assert_eq!(by_topic["inventory.reserved"], by_topic["shipments.created"], "{by_topic:?}");
    system.stop().await;
}
