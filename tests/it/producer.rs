//! The idempotent and transactional producer against the real broker, read
//! back by confluent-kafka (librdkafka).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::records::RecordBatchDecoder;
use kfn::kafka::fetch::{decode_partition, fetch_request, FetchLimits, Isolation, PartitionFetch};
use kfn::kafka::group::coordinator::{Generation, GroupClient};
use kfn::kafka::group::protocol::{encode_assignment, encode_subscription, Assignment, TopicPartition};
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn::kafka::{Cluster, ConnectOptions};
use serde_json::Value;

fn record(value: &str) -> ProducerRecord {
    ProducerRecord::new(Some(Bytes::from("k")), Some(Bytes::from(value.to_string())), 1_700_000_000_000)
}

/// Values of `topic` as confluent-kafka reads them with `isolation`.
async fn read(bootstrap: &str, topic: &str, isolation: &str) -> Vec<String> {
    let args = [bootstrap.to_string(), topic.to_string(), isolation.to_string()];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kfn_tests::python::run("read_topic.py", &args)
    })
    .await
    .expect("join")
    .expect("python reader");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| v["value"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A broker of its own behind a fault proxy, its cluster seen through the proxy, and a new
/// one-partition topic named after `prefix` on it.
struct BehindProxy {
    proxy: kfn_tests::proxy::FaultProxy,
    _broker: kfn::dev::LocalCluster,
    bootstrap: String,
    cluster: Cluster,
    topic: String,
}

async fn behind_proxy(prefix: &str) -> BehindProxy {
    let (proxy, _broker) = kfn_tests::broker_behind_proxy().await.expect("broker behind proxy");
    let bootstrap = format!("127.0.0.1:{}", proxy.port);
    let cluster = Cluster::new(vec![bootstrap.clone()], ConnectOptions::default());
    let topic = kfn_tests::unique(prefix);
    kfn::kafka::Admin::new(cluster.clone())
        .create_topics(&[kfn::kafka::NewTopic {
            name: topic.clone(),
            partitions: 1,
            replication: 1,
            configs: Default::default(),
        }])
        .await
        .expect("create topic");
    BehindProxy { proxy, _broker, bootstrap, cluster, topic }
}

async fn retried_after_lost_answer(idempotent: bool) -> (Vec<String>, usize) {
    let BehindProxy { proxy, _broker, bootstrap, cluster, topic } = behind_proxy("idem").await;
    let config = ProducerConfig { idempotent, ..ProducerConfig::default() };
    let producer = Producer::new(cluster, config).await.expect("producer");
    let tp = TopicPartition::new(topic.clone(), 0);
    producer.send(&tp, vec![record("before")]).await.expect("first send");
    proxy.drop_next_produce_answer();
    producer.send(&tp, vec![record("a"), record("b"), record("c")]).await.expect("send survives the lost answer");
    producer.send(&tp, vec![record("after")]).await.expect("last send");
    let dropped = proxy.dropped();
    (read(&bootstrap, &topic, "read_uncommitted").await, dropped)
}

#[tokio::test]
async fn an_idempotent_retry_after_a_lost_answer_writes_once() {
    let (values, dropped) = retried_after_lost_answer(true).await;
    assert_eq!(dropped, 1, "the proxy swallowed one Produce answer after the broker wrote the batch");
    assert_eq!(values, ["before", "a", "b", "c", "after"]);
}

#[tokio::test]
async fn without_idempotence_the_same_fault_duplicates() {
    // The control experiment: it shows the fault really re-sends a written batch.
    let (values, dropped) = retried_after_lost_answer(false).await;
    assert_eq!(dropped, 1);
    assert_eq!(values, ["before", "a", "b", "c", "a", "b", "c", "after"]);
}

/// An EndTxn that gets no answer leaves the transaction open at the broker:
/// the producer must end it (a new epoch) before its next transaction, or
/// the next commit would commit the records of the one its caller aborted.
#[tokio::test]
async fn a_transaction_whose_abort_got_no_answer_never_commits_with_the_next() {
    if kfn_tests::on_tansu() {
        eprintln!("skipped: tansu returns aborted records to read_committed readers (docs/guarantees.md), so an aborted transaction cannot be told from a committed one there");
        return;
    }
    let BehindProxy { proxy, _broker, bootstrap, cluster, topic } = behind_proxy("txn-unsettled").await;
    let config = ProducerConfig {
        transactional_id: Some(kfn_tests::unique("txn")),
        delivery_timeout: Duration::from_secs(3),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(cluster, config).await.expect("transactional producer");
    let tp = TopicPartition::new(topic.clone(), 0);
    producer.stage(&tp, vec![record("aborted")]);
    producer.send_staged().await.expect("sent, not yet decided");
    const END_TXN: i16 = 26;
    proxy.cut_api(Some(END_TXN));
    let failed = producer.abort().await.expect_err("no EndTxn gets through");
    assert!(!failed.is_fenced(), "{failed}");
    proxy.cut_api(None);
    assert!(proxy.cuts() >= 1, "the proxy cut the EndTxn requests");
    producer.stage(&tp, vec![record("committed")]);
    producer.commit().await.expect("the next transaction commits");
    assert_eq!(read(&bootstrap, &topic, "read_committed").await, ["committed"]);
}

async fn transactional(cluster: &Cluster, id: &str) -> Producer {
    let config = ProducerConfig { transactional_id: Some(id.to_string()), ..ProducerConfig::default() };
    Producer::new(cluster.clone(), config).await.expect("transactional producer")
}

#[tokio::test]
async fn an_aborted_transaction_is_invisible_to_read_committed() {
    let cluster = kfn_tests::cluster();
    let topic = kfn_tests::unique("txn-abort");
    kfn_tests::create_topic(&topic, 2).await.expect("topic");
    let producer = transactional(&cluster, &kfn_tests::unique("txn")).await;
    let p0 = TopicPartition::new(topic.clone(), 0);
    let p1 = TopicPartition::new(topic.clone(), 1);
    producer.stage(&p0, vec![record("c1"), record("c2")]);
    producer.commit().await.expect("commit");
    producer.stage(&p0, vec![record("x1"), record("x2")]);
    producer.stage(&p1, vec![record("x3")]);
    producer.abort().await.expect("abort");
    producer.stage(&p1, vec![record("c3")]);
    producer.commit().await.expect("commit");
    let mut values = read(kfn_tests::broker(), &topic, "read_committed").await;
    values.sort();
    assert_eq!(values, ["c1", "c2", "c3"]);
}

#[tokio::test]
async fn a_committed_transaction_makes_outputs_and_offsets_visible_together() {
    let cluster = kfn_tests::cluster();
    let topic = kfn_tests::unique("txn-commit");
    let input = kfn_tests::unique("txn-input");
    kfn_tests::create_topic(&topic, 1).await.expect("topic");
    kfn_tests::create_topic(&input, 1).await.expect("topic");
    let group = kfn_tests::unique("txn-group");
    let producer = transactional(&cluster, &kfn_tests::unique("txn")).await;
    let out = TopicPartition::new(topic.clone(), 0);
    let consumed = TopicPartition::new(input.clone(), 0);
    producer.stage(&out, vec![record("o1"), record("o2")]);
    // A standalone commit (generation -1): no group membership is checked.
    let generation = Generation { id: -1, member_id: String::new(), protocol: String::new() };
    producer.send_offsets(&group, &generation, &BTreeMap::from([(consumed.clone(), 42)])).await.expect("offsets");

    let mut client = GroupClient::new(cluster.clone(), group.clone());
    let before = client.committed(std::slice::from_ref(&consumed)).await;
    assert!(!matches!(&before, Ok(m) if m.get(&consumed) == Some(&42)), "offsets visible before commit: {before:?}");
    assert!(read(kfn_tests::broker(), &topic, "read_committed").await.is_empty(), "outputs visible before commit");

    producer.commit().await.expect("commit");
    let after = client.committed(std::slice::from_ref(&consumed)).await.expect("committed offsets");
    assert_eq!(after.get(&consumed), Some(&42));
    assert_eq!(read(kfn_tests::broker(), &topic, "read_committed").await, ["o1", "o2"]);
}

/// A transaction asks its coordinators several times (AddPartitionsToTxn,
/// AddOffsetsToTxn, TxnOffsetCommit, EndTxn): the producer looks each up once
/// and adds all the partitions it writes in one request. Before, every one
/// of those requests came with a FindCoordinator, and each partition with an
/// AddPartitionsToTxn of its own.
#[tokio::test]
async fn transactions_look_up_their_coordinators_once_and_add_their_partitions_together() {
    const FIND_COORDINATOR: i16 = 10;
    const ADD_PARTITIONS_TO_TXN: i16 = 24;
    const TRANSACTIONS: usize = 4;
    let BehindProxy { proxy, _broker, bootstrap, cluster, topic } = behind_proxy("txn-coord").await;
    let other = kfn_tests::unique("txn-coord-other");
    let new = kfn::kafka::NewTopic { name: other.clone(), partitions: 2, replication: 1, configs: Default::default() };
    kfn::kafka::Admin::new(cluster.clone()).create_topics(&[new]).await.expect("create topic");
    let group = kfn_tests::unique("txn-coord-group");
    let generation = Generation { id: -1, member_id: String::new(), protocol: String::new() };
    let producer = transactional(&cluster, &kfn_tests::unique("txn")).await;
    let partitions =
        [TopicPartition::new(topic.clone(), 0), TopicPartition::new(other.clone(), 0), TopicPartition::new(other, 1)];
    // The first transaction finds the group's coordinator (the broker may
    // still be creating __consumer_offsets: a few tries); the others count.
    let mut finds = 0;
    let mut adds = 0;
    for n in 0..=TRANSACTIONS {
        if n == 1 {
            (finds, adds) = (proxy.requests(FIND_COORDINATOR), proxy.requests(ADD_PARTITIONS_TO_TXN));
        }
        for tp in &partitions {
            producer.stage(tp, vec![record(&format!("t{n}"))]);
        }
        let offsets = BTreeMap::from([(TopicPartition::new(topic.clone(), 0), n as i64)]);
        producer.send_offsets(&group, &generation, &offsets).await.expect("offsets");
        producer.commit().await.expect("commit");
    }
    let finds = proxy.requests(FIND_COORDINATOR) - finds;
    let adds = proxy.requests(ADD_PARTITIONS_TO_TXN) - adds;
    assert_eq!(finds, 0, "FindCoordinator requests for {TRANSACTIONS} transactions after the first");
    assert_eq!(adds, TRANSACTIONS, "AddPartitionsToTxn requests for {TRANSACTIONS} transactions of 3 partitions");
    assert_eq!(read(&bootstrap, &topic, "read_committed").await, ["t0", "t1", "t2", "t3", "t4"]);
}

#[tokio::test]
async fn a_fenced_zombie_cannot_write() {
    let cluster = kfn_tests::cluster();
    let topic = kfn_tests::unique("txn-fence");
    kfn_tests::create_topic(&topic, 1).await.expect("topic");
    let id = kfn_tests::unique("txn");
    let tp = TopicPartition::new(topic.clone(), 0);
    let zombie = transactional(&cluster, &id).await;
    zombie.stage(&tp, vec![record("zombie-1")]);
    // A new instance with the same transactional id fences the old one.
    let successor = transactional(&cluster, &id).await;
    let err = zombie.send(&tp, vec![record("zombie-2")]).await.expect_err("the zombie's write was accepted");
    assert!(err.is_fenced(), "expected a fencing error, got {err}");
    let err = zombie.commit().await.expect_err("the zombie's commit was accepted");
    assert!(err.is_fenced(), "expected a fencing error, got {err}");
    successor.stage(&tp, vec![record("successor")]);
    successor.commit().await.expect("commit");
    assert_eq!(read(kfn_tests::broker(), &topic, "read_committed").await, ["successor"]);
}

/// Joins `group` as a new member reading `topic` and takes all of it: its generation.
async fn join_alone(client: &mut GroupClient, topic: &str) -> Generation {
    let subscription = encode_subscription(&[topic.to_string()], &[], None).expect("subscription");
    let (session, rebalance) = (Duration::from_secs(6), Duration::from_secs(10));
    // A new group's coordinator may still be loading: retriable, as for any member.
    let joined = loop {
        match client.join("", session, rebalance, &[("range", subscription.clone())]).await {
            Err(e) if e.is_retriable() => {
                client.reset_coordinator();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            joined => break joined.expect("join"),
        }
    };
    let all = Assignment::from_partitions([TopicPartition::new(topic, 0)]);
    let assignments = vec![(joined.generation.member_id.clone(), encode_assignment(&all).expect("assignment"))];
    client.sync(&joined.generation, assignments, rebalance).await.expect("sync");
    joined.generation
}

#[tokio::test]
async fn a_member_the_group_moved_on_from_cannot_commit_a_transaction() {
    // KIP-447: with one transactional producer per member, nothing fences a
    // zombie's transactional id; the group coordinator refuses its offsets instead.
    if kfn_tests::on_tansu() {
        eprintln!("skipped: tansu does not check the generation in TxnOffsetCommit; kfn uses one producer per partition there");
        return;
    }
    let cluster = kfn_tests::cluster();
    let (topic, input) = (kfn_tests::unique("txn-gen-out"), kfn_tests::unique("txn-gen-in"));
    kfn_tests::create_topic(&topic, 1).await.expect("topic");
    kfn_tests::create_topic(&input, 1).await.expect("topic");
    let group = kfn_tests::unique("txn-gen-group");
    let (out, consumed) = (TopicPartition::new(topic.clone(), 0), TopicPartition::new(input.clone(), 0));

    // The zombie joined, then the group moved on without it (as when its session expired).
    let mut zombie_client = GroupClient::new(cluster.clone(), group.clone());
    let stale = join_alone(&mut zombie_client, &input).await;
    zombie_client.leave(&stale.member_id).await.expect("leave");
    let mut successor_client = GroupClient::new(cluster.clone(), group.clone());
    let current = join_alone(&mut successor_client, &input).await;
    assert!(current.id > stale.id, "the group moved to a new generation: {current:?} after {stale:?}");

    // Each member has its own transactional id: neither fences the other.
    let zombie = transactional(&cluster, &kfn_tests::unique("txn-zombie")).await;
    let successor = transactional(&cluster, &kfn_tests::unique("txn-successor")).await;
    zombie.stage(&out, vec![record("zombie")]);
    let offsets = BTreeMap::from([(consumed.clone(), 7)]);
    let err = zombie.send_offsets(&group, &stale, &offsets).await.expect_err("the zombie's offsets were accepted");
    assert!(!err.is_fenced(), "the zombie's producer itself is not fenced: {err}");
    let refused = err.to_string();
    assert!(refused.contains("IllegalGeneration") || refused.contains("UnknownMemberId"), "{refused}");
    zombie.abort().await.expect("the zombie aborts");

    successor.stage(&out, vec![record("successor")]);
    successor.send_offsets(&group, &current, &BTreeMap::from([(consumed.clone(), 5)])).await.expect("offsets");
    successor.commit().await.expect("commit");
    assert_eq!(read(kfn_tests::broker(), &topic, "read_committed").await, ["successor"]);
    let committed = successor_client.committed(std::slice::from_ref(&consumed)).await.expect("committed offsets");
    assert_eq!(committed.get(&consumed), Some(&5));
}

#[tokio::test]
async fn only_a_group_coordinator_that_checks_generations_refuses_a_stranger() {
    // `transactional_producer = "auto"` asks the broker this before it holds one
    // producer per member: Apache Kafka refuses; tansu advertises the same request
    // versions but accepts, so kfn keeps one producer per partition there.
    let cluster = kfn_tests::cluster();
    let input = kfn_tests::unique("txn-probe-in");
    kfn_tests::create_topic(&input, 1).await.expect("topic");
    let group = kfn_tests::unique("txn-probe-group");
    let producer = transactional(&cluster, &kfn_tests::unique("txn-probe")).await;
    let refuses = producer.group_refuses_strangers(&group, &input, Duration::from_secs(10)).await.expect("probe");
    assert_eq!(refuses, Some(!kfn_tests::on_tansu()), "whether the group coordinator refused a stranger's offsets");
    // The probe leaves nothing behind: its transaction was aborted.
    let committed = GroupClient::new(cluster.clone(), group).committed(&[TopicPartition::new(&input, 0)]).await;
    assert!(committed.expect("committed offsets").is_empty());
    producer.stage(&TopicPartition::new(&input, 0), vec![record("after")]);
    producer.commit().await.expect("the producer goes on after the probe");
}

#[tokio::test]
async fn a_new_owner_waits_for_the_offsets_of_an_open_transaction() {
    // What one producer per member relies on: the next owner of a partition
    // reads its start offset only once the previous owner's transaction ended
    // (OffsetFetch with require_stable, KIP-447).
    if kfn_tests::on_tansu() {
        eprintln!("skipped: kfn uses one producer per partition on tansu, whose InitProducerId ends the transaction");
        return;
    }
    let cluster = kfn_tests::cluster();
    let input = kfn_tests::unique("txn-stable-in");
    kfn_tests::create_topic(&input, 1).await.expect("topic");
    let group = kfn_tests::unique("txn-stable-group");
    let consumed = TopicPartition::new(input.clone(), 0);
    let mut owner_client = GroupClient::new(cluster.clone(), group.clone());
    let owner = join_alone(&mut owner_client, &input).await;
    owner_client.commit(&owner, &BTreeMap::from([(consumed.clone(), 3)])).await.expect("plain commit");

    let producer = transactional(&cluster, &kfn_tests::unique("txn-owner")).await;
    producer.send_offsets(&group, &owner, &BTreeMap::from([(consumed.clone(), 9)])).await.expect("offsets");
    let mut next_owner = GroupClient::new(cluster.clone(), group.clone());
    let read = tokio::spawn({
        let consumed = consumed.clone();
        async move { next_owner.committed(&[consumed]).await }
    });
    let mut read = std::pin::pin!(read);
    let early = tokio::time::timeout(Duration::from_secs(1), &mut read).await;
    assert!(early.is_err(), "the offset was read while a transaction held it: {early:?}");
    producer.commit().await.expect("commit");
    let committed = read.await.expect("join").expect("committed offsets");
    assert_eq!(committed.get(&consumed), Some(&9), "the transaction's offset, not the one before it");
}

/// Every record of `tp` by offset (values as text), and the base offsets of
/// the record batches that hold them, read with raw fetches until `count` records came.
async fn read_log(cluster: &Cluster, tp: &TopicPartition, count: usize) -> (BTreeMap<i64, String>, BTreeSet<i64>) {
    let conn = cluster.leader(&tp.topic, tp.partition).await.expect("leader");
    let info = cluster.topic(&tp.topic).await.expect("metadata");
    let version = conn.version_capped::<FetchRequest>(12).expect("a Fetch version with topic names");
    let (mut records, mut batches, mut position) = (BTreeMap::new(), BTreeSet::new(), 0);
    while records.len() < count {
        let wanted =
            PartitionFetch { topic: &tp.topic, topic_id: info.id, partition: tp.partition, fetch_offset: position };
        let request = fetch_request(&[wanted], &FetchLimits::default(), Isolation::ReadUncommitted);
        let response = conn.send_version(&request, version, Duration::from_secs(1)).await.expect("fetch");
        let data = response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition)
            .expect("an answer for the partition");
        assert_eq!(data.error_code, 0, "fetch of {tp} from {position}");
        let mut bytes = data.records.clone().unwrap_or_default();
        // A fetch may start inside a batch: the same batch can come twice, hence a set.
        batches.extend(
            RecordBatchDecoder::decode_batch_info(&mut bytes).expect("batch headers").iter().map(|b| b.min_offset),
        );
        let decoded = decode_partition(&tp.topic, data, position, Isolation::ReadUncommitted).expect("decode");
        assert!(decoded.next_fetch_offset > position, "no records of {tp} past offset {position}");
        for record in decoded.records {
            let value = String::from_utf8(record.value.unwrap_or_default().to_vec()).expect("utf-8 value");
            records.insert(record.offset, value);
        }
        position = decoded.next_fetch_offset;
    }
    (records, batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_to_one_partition_share_batches() {
    let cluster = kfn_tests::cluster();
    let topic = kfn_tests::unique("group-commit");
    kfn_tests::create_topic(&topic, 1).await.expect("topic");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("producer");
    let tp = TopicPartition::new(topic.clone(), 0);
    // 200 callers with one record each, as the HTTP trigger sends one request's event.
    let callers = (0..200).map(|n| {
        let (producer, tp) = (producer.clone(), tp.clone());
        tokio::spawn(async move {
            let value = format!("caller-{n}");
            let offset = producer.send(&tp, vec![record(&value)]).await;
            (value, offset)
        })
    });
    let mut answered = BTreeMap::new();
    for caller in futures::future::join_all(callers).await {
        let (value, offset) = caller.expect("caller task");
        let offset = offset.unwrap_or_else(|e| panic!("send of {value} failed: {e}"));
        if let Some(other) = answered.insert(offset, value.clone()) {
            panic!("{value} and {other} were both answered with offset {offset}");
        }
    }

    let (log, batches) = read_log(&cluster, &tp, answered.len()).await;
    // Every caller's offset holds its own record, and the log holds nothing else.
    assert_eq!(log, answered);
    assert!(batches.len() <= 20, "200 concurrent sends took {} record batches: {batches:?}", batches.len());
}

/// `send_each` writes each partition's records in their order and returns once all are
/// acknowledged; a batch with a record the producer refuses fails the call before any batch is
/// queued, so nothing of it is written.
#[tokio::test]
async fn send_each_writes_every_partitions_records_or_none_when_one_is_refused() {
    let cluster = kfn_tests::cluster();
    let topic = kfn_tests::unique("send-each");
    kfn_tests::create_topic(&topic, 3).await.expect("topic");
    let producer = Producer::new(cluster, ProducerConfig::default()).await.expect("producer");
    let tp = |p| TopicPartition::new(topic.clone(), p);
    producer
        .send_each([(tp(0), vec![record("a1"), record("a2")]), (tp(1), vec![record("b1")]), (tp(2), vec![])])
        .await
        .expect("send_each");
    // Timestamps further apart than a batch's 64-bit delta holds: refused before anything is queued.
    let far = ProducerRecord::new(None, Some(Bytes::from("z")), i64::MIN + 1);
    let refused = producer.send_each([(tp(2), vec![record("c1")]), (tp(0), vec![record("c2"), far])]).await;
    assert!(refused.is_err(), "a record the batch cannot hold is refused");
    let mut values = read(kfn_tests::broker(), &topic, "read_uncommitted").await;
    values.sort();
    assert_eq!(values, ["a1", "a2", "b1"], "every acknowledged record, and nothing of the refused call");
}
