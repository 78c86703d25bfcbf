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

/// A keyed request that reached a replica while it was stopped (SIGSTOP: the
/// kernel took it in, nothing ran) counts from before the stop: found only
/// once the replica runs again, past the answer deadline, it gets 503 and
/// writes nothing, as its client may be retrying on another replica by then.
/// (The chaos runner's zombie replica created such an order a second time,
/// docs/chaos.md.) The retry on the other replica creates the one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_a_stopped_replica_finds_when_it_runs_again_is_refused_unwritten() {
    use std::time::Duration;

    use kfn::trigger::idempotency::ANSWER_DEADLINE;

    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    let system = OrderSystem::start(binary, 2).await.expect("the order system starts");
    let customer = kfn_tests::unique("stopped-customer");
    let key = kfn_tests::unique("stopped-key");

    system.signal_replica(0, libc::SIGSTOP);
    let stopped = tokio::time::Instant::now();
    let first = {
        let (http, customer, key) = (system.http[0], customer.clone(), key.clone());
        tokio::spawn(async move { post_order(http, &customer, &key).await })
    };
    // The stop outlasts the request's deadline (the fault's length, not a wait for a condition).
    tokio::time::sleep_until(stopped + ANSWER_DEADLINE + Duration::from_secs(1)).await;
    system.signal_replica(0, libc::SIGCONT);
    let (status, answer) = first.await.expect("the first attempt");
    assert_eq!(status, 503, "a request found after the stall must not be written: {answer}");

    let (status, answer) = post_order(system.http[1], &customer, &key).await;
    assert_eq!(status, 202, "the retry on the other replica: {answer}");
    let created = created_for(&system, &customer).await;
    assert_eq!(created.len(), 1, "one order for the key: {created:?}");
    system.stop().await;
}

/// Every committed value of `topic`, read_committed to its end.
async fn committed_values(topic: &str) -> Vec<Vec<u8>> {
    let records = kfn::invoker::replay::read_topic(&kfn_tests::cluster(), topic).await.expect("read the topic");
    records.into_iter().map(|(_, r)| r.value.map(|v| v.to_vec()).unwrap_or_default()).collect()
}

/// An attempt whose answer and events reach the log later than
/// `ANSWER_DEADLINE` after it arrived is aborted (503), so a retry that
/// looked the key up on another replica meanwhile (and created the order)
/// cannot be followed by the first attempt's order: neither its answer nor its
/// event is ever committed. The same request in time is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_reaches_the_log_past_its_deadline_writes_nothing() {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use kfn::kafka::group::protocol::TopicPartition;
    use kfn::kafka::producer::{ProducerConfig, ProducerRecord};
    use kfn::trigger::idempotency::{Answer, IdempotencyError, IdempotencyLog, ANSWER_DEADLINE};

    let cluster = kfn_tests::cluster();
    let keys = kfn_tests::unique("late.idempotency");
    let events = kfn_tests::unique("late-events");
    kfn_tests::create_topic(&keys, 3).await.expect("keys topic");
    kfn_tests::create_topic(&events, 1).await.expect("events topic");
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let day = Duration::from_secs(86_400);
    let config = ProducerConfig::default();
    let start = || IdempotencyLog::start(&cluster, "late", &keys, day, &config, shutdown.clone());
    let (first, other) = (start().await.expect("replica 0"), start().await.expect("replica 1"));
    let answer = |order: &str| Answer { status: 202, body: format!(r#"{{"order_id":"{order}"}}"#) };
    let event = |order: &str| {
        vec![(
            TopicPartition::new(&events, 0),
            vec![ProducerRecord::new(None, Some(Bytes::from(order.to_string())), 0)],
        )]
    };

    let long_ago = Instant::now().checked_sub(ANSWER_DEADLINE + Duration::from_secs(1)).expect("an instant long ago");
    let late = first.commit("k-late", answer("o-late"), event("o-late"), long_ago).await;
    assert!(matches!(late, Err(IdempotencyError::Late { .. })), "{late:?}");
    assert_eq!(other.remembered("k-late").await.expect("look-up"), None, "the late answer is not remembered");

    first.commit("k-on-time", answer("o-on-time"), event("o-on-time"), Instant::now()).await.expect("in time");
    assert_eq!(other.remembered("k-on-time").await.expect("look-up"), Some(answer("o-on-time")));
    // Commit markers reach each partition of a transaction in turn: wait for the event's.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events_written = committed_values(&events).await;
    while events_written.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        events_written = committed_values(&events).await;
    }
    assert_eq!(events_written, vec![b"o-on-time".to_vec()], "only the attempt in time wrote its event");
}
