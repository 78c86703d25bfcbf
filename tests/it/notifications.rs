//! Notifications exactly once (issue 19, part 3): `notify` runs
//! `guarantee = "exactly_once"` in the shipped functions.toml. 5,000 orders'
//! PaymentProcessed and ShipmentDispatched events stream into its inputs; its
//! only replica is killed with SIGKILL mid-stream and restarted while the
//! stream goes on. notifications.outbound, read with read_committed, then
//! holds exactly one notification per (order, kind).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kfn::avro::{register_topic_schema, OutputEncoder};
use kfn::config::Config;
use kfn::kafka::group::coordinator::GroupClient;
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::partitioner::partition_for_key;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn::kafka::Cluster;
use kfn_functions::events::{Notification, NotificationKind, OrderItem, PaymentProcessed, ShipmentDispatched};
use kfn_tests::order_system::OrderSystem;
use rust_decimal::Decimal;

use crate::order_system::ONE_AT_A_TIME;

/// Orders of the stream; each has two events, so two notifications.
const ORDERS: usize = 5_000;
/// Orders written at once: the stream is written a little at a time while notify reads it.
const ROUND: usize = 25;
/// The replica is killed once this many inputs are committed.
const KILL_AFTER: i64 = 1_000;
/// The two inputs of notify this test writes.
const INPUTS: [&str; 2] = ["payments.processed", "shipments.dispatched"];

/// The encoder (with the registry's id) and partition count of each input.
type Encoders = BTreeMap<&'static str, (OutputEncoder, i32)>;

async fn encoders(system: &OrderSystem) -> Encoders {
    let config =
        Config::load_file_only(&kfn_tests::workspace_root().join("functions.toml"), &kfn_functions::registry())
            .expect("the shipped functions.toml loads");
    let mut encoders = BTreeMap::new();
    for topic in INPUTS {
        let path = config.topics[topic].schema.clone().expect("the input has a schema");
        let text = std::fs::read_to_string(path).expect("the schema file");
        let (id, schema) = register_topic_schema(system.schema_registry(), topic, &text).await.expect("register");
        let partitions = system.cluster().topic(topic).await.expect("metadata").partitions.len() as i32;
        encoders.insert(topic, (OutputEncoder::new(topic, id, schema), partitions));
    }
    encoders
}

/// Writes both events of orders `range` (`<run>-<n>`) to notify's inputs.
async fn write_orders(encoders: &Encoders, producer: &Producer, run: &str, range: std::ops::Range<usize>) {
    let mut by_tp: BTreeMap<(&str, i32), Vec<ProducerRecord>> = BTreeMap::new();
    for n in range {
        let order_id = format!("{run}-{n:05}");
        let customer_id = format!("customer-{}", n % 97);
        let paid = PaymentProcessed {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            payment_id: format!("pay-{order_id}"),
            amount: Decimal::new(1999, 2),
            items: vec![OrderItem { product_id: "SKU-001".into(), quantity: 1, unit_price: Decimal::new(1999, 2) }],
            shipping_address: "1 Main St".into(),
            processed_at: 1_700_000_000_000,
        };
        let dispatched = ShipmentDispatched {
            shipment_id: format!("ship-{order_id}"),
            order_id: order_id.clone(),
            customer_id,
            carrier: "DHL".into(),
            tracking_number: format!("TRK-{n}"),
            dispatched_at: 1_700_000_000_000,
        };
        for (topic, event) in
            [(INPUTS[0], &paid as &dyn kfn_sdk::ErasedEvent), (INPUTS[1], &dispatched as &dyn kfn_sdk::ErasedEvent)]
        {
            let (encoder, partitions) = &encoders[topic];
            let mut value = Vec::new();
            encoder.encode(event, &mut value).expect("encode");
            let partition = partition_for_key(order_id.as_bytes(), *partitions);
            by_tp.entry((topic, partition)).or_default().push(ProducerRecord::new(
                Some(Bytes::from(order_id.clone())),
                Some(Bytes::from(value)),
                kfn_sdk::now_ms(),
            ));
        }
    }
    let sends = by_tp.into_iter().map(|((topic, partition), records)| async move {
        producer.send(&TopicPartition::new(topic, partition), records).await
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("produce an input");
    }
}

/// The offsets notify's group committed on the inputs this test writes, summed.
async fn committed(cluster: &Cluster) -> i64 {
    let mut partitions = Vec::new();
    for topic in INPUTS {
        for p in cluster.topic(topic).await.expect("metadata").partitions {
            partitions.push(TopicPartition::new(topic, p.partition));
        }
    }
    let mut client = GroupClient::new(cluster.clone(), "kfn.notify");
    client.committed(&partitions).await.map(|c| c.values().sum()).unwrap_or(0)
}

/// Waits until notify committed at least `at_least` of the inputs; returns how many it had.
async fn await_committed(cluster: &Cluster, at_least: i64, limit: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let sum = committed(cluster).await;
        if sum >= at_least {
            return sum;
        }
        assert!(tokio::time::Instant::now() < deadline, "notify committed {sum} of {at_least} inputs within {limit:?}");
        // The group coordinator has no change notification: poll it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_killed_mid_stream_sends_each_notification_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    // No replica of the whole system: only notify runs, on its inputs as this test writes them.
    let mut system = OrderSystem::start(binary, 0).await.expect("the order system starts");
    let cluster = system.cluster().clone();
    let encoders = encoders(&system).await;
    let replica = system.add_replica(&["notify"]).await.expect("a notify replica starts");

    // The stream: written round by round while notify reads it, through the kill and the restart.
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("producer");
    let run = kfn_tests::unique("eos");
    let written = Arc::new(AtomicUsize::new(0));
    // The second half waits for the kill, so the kill always falls mid-stream
    // however fast the writer is against notify.
    let (killed, mut on_kill) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn({
        let (run, written) = (run.clone(), written.clone());
        async move {
            for from in (0..ORDERS).step_by(ROUND) {
                if from >= ORDERS / 2 {
                    on_kill.wait_for(|k| *k).await.expect("the test is running");
                }
                write_orders(&encoders, &producer, &run, from..from + ROUND).await;
                written.store(from + ROUND, Ordering::SeqCst);
            }
        }
    });

    let at_kill = await_committed(&cluster, KILL_AFTER, Duration::from_secs(180)).await;
    let written_at_kill = written.load(Ordering::SeqCst);
    system.kill_replica(replica);
    killed.send_replace(true);
    eprintln!("notify killed with {at_kill} inputs committed, {written_at_kill} of {ORDERS} orders written");
    assert!(written_at_kill < ORDERS, "the stream had ended before the kill: nothing was mid-stream");

    system.restart_replica(replica).await.expect("the notify replica restarts");
    writer.await.expect("the writer finished");
    let inputs = 2 * ORDERS as i64;
    await_committed(&cluster, inputs, Duration::from_secs(300)).await;

    let sent: Vec<Notification> = system.read_events("notifications.outbound").await.expect("read notifications");
    let mut per_notification: BTreeMap<(String, String), usize> = BTreeMap::new();
    for n in sent.iter().filter(|n| n.order_id.starts_with(&format!("{run}-"))) {
        *per_notification.entry((n.order_id.clone(), n.kind.to_string())).or_default() += 1;
    }
    let twice: Vec<_> = per_notification.iter().filter(|(_, count)| **count > 1).take(5).collect();
    assert!(twice.is_empty(), "notifications sent more than once, e.g. {twice:?}");
    for n in 0..ORDERS {
        let order_id = format!("{run}-{n:05}");
        for kind in [NotificationKind::PaymentConfirmed, NotificationKind::ShipmentDispatched] {
            assert!(per_notification.contains_key(&(order_id.clone(), kind.to_string())), "no {kind} for {order_id}");
        }
    }
    assert_eq!(per_notification.len(), 2 * ORDERS);
    system.stop().await;
}
