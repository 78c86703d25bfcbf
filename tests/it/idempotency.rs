//! Idempotency-Keys across replicas (issue 19, part 2): the shipped order
//! system with two replica processes, each with its own HTTP port. A POST
//! with a key on replica 0, then the same key on replica 1, gets the same
//! answer (the same order id) and leaves exactly one OrderCreated in
//! orders.created (read_committed); a replica killed with SIGKILL and
//! restarted still answers the key from the `order_api.idempotency` topic.

use std::net::SocketAddr;
use std::path::Path;

use kfn_functions::events::OrderCreated;
use kfn_tests::order_system::{request, OrderSystem};

use crate::order_system::ONE_AT_A_TIME;

/// POST /orders of one line for `customer`, with `key` as Idempotency-Key: (status, body).
async fn post_order(http: SocketAddr, customer: &str, key: &str) -> (u16, String) {
    let body = format!(
        r#"{{"customer_id":"{customer}","items":[{{"product_id":"SKU-001","quantity":1,"unit_price":"19.99"}}],"shipping_address":"1 Main St"}}"#
    );
    let headers = [("Content-Type", "application/json"), ("Idempotency-Key", key)];
    request(http, "POST", "/orders", &headers, body.as_bytes()).await.expect("POST /orders")
}

fn order_id(answer: &str) -> String {
    let answer: serde_json::Value = serde_json::from_str(answer).expect("a JSON answer");
    answer["order_id"].as_str().expect("an order_id").to_string()
}

/// The committed OrderCreated events of `customer`.
async fn created_for(system: &OrderSystem, customer: &str) -> Vec<OrderCreated> {
    let created: Vec<OrderCreated> = system.read_events("orders.created").await.expect("read orders.created");
    created.into_iter().filter(|o| o.customer_id == customer).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_replica_gets_the_first_answer_and_creates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    let mut system = OrderSystem::start(binary, 2).await.expect("the order system starts");
    let (one, two) = (system.http[0], system.http[1]);

    // The first request on replica 0; the client's retry lands on replica 1.
    let customer = kfn_tests::unique("idem-customer");
    let key = kfn_tests::unique("idem-key");
    let (status, first) = post_order(one, &customer, &key).await;
    assert_eq!(status, 202, "{first}");
    let (retried_status, retried) = post_order(two, &customer, &key).await;
    assert_eq!((retried_status, &retried), (status, &first), "replica 1 gave another answer to the same key");
    let id = order_id(&first);

    // A new key is a new order, on either replica (the key decides, not the body).
    let other_key = kfn_tests::unique("idem-key");
    let (status, other) = post_order(two, &customer, &other_key).await;
    assert_eq!(status, 202, "{other}");
    assert_ne!(order_id(&other), id, "a new key must create a new order");

    let created = created_for(&system, &customer).await;
    let ids: Vec<&str> = created.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "one OrderCreated for the key: {ids:?}");
    assert_eq!(created.len(), 2, "one order per key: {ids:?}");

    // A crashed and restarted replica reads the key back from the topic.
    system.restart_replica(0).await.expect("replica 0 restarts");
    let (again_status, again) = post_order(system.http[0], &customer, &key).await;
    assert_eq!((again_status, &again), (202, &first), "the restarted replica forgot the key");
    let created = created_for(&system, &customer).await;
    assert_eq!(created.len(), 2, "the retry after the restart created an order: {created:?}");
    system.stop().await;
}
