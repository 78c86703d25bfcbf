//! Delivery guarantees under a crash: a replica (a child process) is killed
//! with SIGKILL in the middle of a 10,000-record stream and restarted.
//! exactly_once: the output, read with read_committed, holds exactly one
//! output per input. at_least_once: nothing is lost. A SIGTERM under load
//! (graceful shutdown) loses and duplicates nothing, even at_least_once.
//! On a three-node Apache Kafka cluster, kill -9 of the broker leading the
//! most partitions mid-stream loses and duplicates nothing either.
//! exactly_once runs under both transactional models: one producer per
//! member (KIP-447, fenced by the group generation) and one per input
//! partition (fenced by the transactional id).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kfn::avro::{register_topic_schema, OutputEncoder, RegistryClient};
use kfn::dev::apache_kafka::{KafkaOptions, LocalKafka};
use kfn::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use kfn::kafka::fetch::Isolation;
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn::kafka::{Admin, Cluster, ConnectOptions, NewTopic};
use kfn::registry::{RegistryConfig, RegistryServer};
use kfn_functions::events::{OrderCreated, OrderItem};
use rust_decimal::Decimal;

const RECORDS: usize = 10_000;
const PARTITIONS: i32 = 3;

/// Orders from this number on are never finished by the first replica, so it
/// is always stopped mid-stream (each partition holds 3,334 orders; its first
/// chunks, up to 2,000 records each, commit before the hold).
const HOLD_FROM: usize = RECORDS * 3 / 4;

struct Replica(Child);

impl Replica {
    /// Starts a replica whose handler takes `delay_us` per call; `hold` makes it
    /// stop working at order [`HOLD_FROM`].
    fn start(config: &Path, log: &Path, hold: bool, delay_us: u32) -> Self {
        let log = std::fs::File::create(log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
        if hold {
            cmd.env("KFN_TEST_HOLD_FROM", HOLD_FROM.to_string());
        }
        let child = cmd
            .args(["run", "--config"])
            .arg(config)
            .env("KFN_LOG", "info")
            .env("KFN_TEST_DELAY_US", delay_us.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start replica");
        Replica(child)
    }

    fn kill9(mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }

    fn terminate(mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a whole topic with kfn's read_committed reader: datum bytes per record.
async fn read_all(cluster: &Cluster, topic: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let partitions = cluster.topic(topic).await.expect("metadata").partitions.len() as i32;
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        // tansu's ListOffsets(latest) can point inside the last batch: the fetches' stable offset corrects it.
        let mut end = list_offset(cluster, &tp, LogEnd::Latest, Isolation::ReadCommitted).await.expect("end offset");
        let mut reader = PartitionReader::new(cluster.clone(), tp, 0, Isolation::ReadCommitted, LogEnd::Earliest);
        while reader.position() < end {
            let batch = reader.next().await.expect("fetch");
            end = end.max(batch.last_stable_offset);
            for r in batch.records {
                let value = r.value.map(|v| v.to_vec()).unwrap_or_default();
                // Strip the Confluent header: the datum is what the handler passed through.
                out.push(value.get(5..).map(<[u8]>::to_vec).unwrap_or_default());
            }
            if batch.held_back.is_some() && reader.position() >= end {
                break;
            }
        }
    }
    out
}

/// Waits until the group committed at least `at_least` offsets over all partitions; returns the sum.
async fn await_committed(cluster: &Cluster, group: &str, input: &str, at_least: i64, limit: Duration) -> i64 {
    let mut client = kfn::kafka::group::coordinator::GroupClient::new(cluster.clone(), group);
    let partitions: Vec<_> = (0..PARTITIONS).map(|p| TopicPartition::new(input, p)).collect();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let sum: i64 = client.committed(&partitions).await.map(|c| c.values().sum()).unwrap_or(0);
        if sum >= at_least {
            return sum;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {sum} of {at_least} inputs committed within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn await_count(cluster: &Cluster, topic: &str, at_least: usize, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = read_all(cluster, topic).await.len();
        if n >= at_least {
            return n;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {n} of {at_least} outputs on {topic} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn order(i: usize) -> OrderCreated {
    OrderCreated {
        order_id: format!("order-{i:05}"),
        customer_id: format!("customer-{}", i % 97),
        items: vec![OrderItem {
            product_id: "SKU-001".into(),
            quantity: 1 + (i % 3) as i32,
            unit_price: Decimal::new(1999, 2),
        }],
        total_amount: Decimal::new(1999 * (1 + (i % 3) as i64), 2),
        shipping_address: "1 Main St".into(),
        created_at: 1_700_000_000_000 + i as i64,
    }
}

/// The fault made mid-stream.
enum Fault<'a> {
    /// SIGKILL of the replica: a crash.
    Kill,
    /// SIGTERM of the replica: a graceful shutdown (finish in-flight work, commit, leave).
    Term,
    /// SIGKILL of the node of a three-node cluster that leads the most partitions of the
    /// input and output, then its restart; the replica runs on.
    KillLeadingBroker(&'a mut LocalKafka),
    /// Every few requests of every client, the replica's included, the connection closes
    /// mid-request (a [`kfn_tests::proxy::FaultProxy`] in front of a broker of its own),
    /// until three quarters of the inputs are committed.
    CutConnections(&'a kfn_tests::proxy::FaultProxy),
}

/// The broker id leading the most partitions of `topics`.
async fn busiest_leader(cluster: &Cluster, topics: &[&str]) -> i32 {
    let mut leads: HashMap<i32, usize> = HashMap::new();
    for t in topics {
        cluster.invalidate(t);
        for p in cluster.topic(t).await.expect("metadata").partitions {
            *leads.entry(p.leader).or_default() += 1;
        }
    }
    leads.into_iter().max_by_key(|(id, n)| (*n, -id)).map(|(id, _)| id).expect("a leader")
}

/// Runs the stream through `fault`; returns the inputs' datums, the outputs' datums
/// (read_committed by kfn's reader) and the output topic.
/// The function's settings under test.
struct Setup {
    guarantee: &'static str,
    ordering: &'static str,
    /// `runtime.transactional_producer`: per_member or per_partition.
    producers: &'static str,
}

const EXACTLY_ONCE: Setup = Setup { guarantee: "exactly_once", ordering: "partition", producers: "per_member" };
const EXACTLY_ONCE_PER_PARTITION: Setup = Setup { producers: "per_partition", ..EXACTLY_ONCE };
const AT_LEAST_ONCE: Setup = Setup { guarantee: "at_least_once", ..EXACTLY_ONCE };

async fn crash_and_restart(setup: Setup, fault: Fault<'_>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, String) {
    let Setup { guarantee, ordering, producers } = setup;
    let (cluster, bootstrap, replication) = match &fault {
        Fault::KillLeadingBroker(kafka) => {
            (Cluster::new(kafka.addrs(), ConnectOptions::default()), kafka.bootstrap().to_string(), 3)
        }
        Fault::CutConnections(proxy) => {
            let bootstrap = format!("127.0.0.1:{}", proxy.port);
            (Cluster::new(vec![bootstrap.clone()], ConnectOptions::default()), bootstrap, 1)
        }
        _ => (kfn_tests::cluster(), kfn_tests::broker().to_string(), 1),
    };
    let suffix = kfn_tests::unique(guarantee);
    let (input, output, dlq) = (format!("in-{suffix}"), format!("out-{suffix}"), format!("dlq-{suffix}"));
    let topic = |name: &String, partitions| NewTopic {
        name: name.clone(),
        partitions,
        replication,
        configs: Default::default(),
    };
    Admin::new(cluster.clone())
        .create_topics(&[topic(&input, PARTITIONS), topic(&output, PARTITIONS), topic(&dlq, 1)])
        .await
        .expect("topics");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let registry_config = RegistryConfig { topic: format!("_schemas-{suffix}"), ..RegistryConfig::default() };
    let registry = RegistryServer::start(cluster.clone(), listener, registry_config).await.expect("registry");
    let url = format!("http://{}", registry.local_addr());
    let schema_path = kfn_tests::workspace_root().join("schemas/order_created.avsc");
    let schema = std::fs::read_to_string(&schema_path).expect("schema");

    // The input: 10,000 orders, Confluent-framed Avro.
    let client = RegistryClient::new(&url, None).expect("client");
    let (id, parsed) = register_topic_schema(&client, &input, &schema).await.expect("register");
    let encoder = OutputEncoder::new(input.as_str(), id, parsed);
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("producer");
    let mut by_partition: HashMap<i32, Vec<ProducerRecord>> = HashMap::new();
    let mut inputs = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let mut value = Vec::new();
        encoder.encode(&order(i), &mut value).expect("encode");
        inputs.push(value[5..].to_vec());
        by_partition.entry((i % PARTITIONS as usize) as i32).or_default().push(ProducerRecord::new(
            Some(bytes::Bytes::from(format!("order-{i:05}"))),
            Some(bytes::Bytes::from(value)),
            0,
        ));
    }
    for (p, records) in by_partition {
        producer.send(&TopicPartition::new(&input, p), records).await.expect("produce input");
    }

    let function = format!("pass-{suffix}");
    // Kept after the test: the replicas' logs are in it.
    let dir = std::env::temp_dir().join(format!("kfn-{suffix}"));
    std::fs::create_dir_all(&dir).expect("test dir");
    eprintln!("replica logs in {}", dir.display());
    let config = dir.join("functions.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[runtime]
brokers = ["{broker}"]
schema_registry = "{url}"
admin_addr = "127.0.0.1:0"
session_timeout = "6s"
shutdown_timeout = "5s"
transactional_producer = "{producers}"

[topics."{input}"]
partitions = {PARTITIONS}
replication = {replication}
schema = "{schema}"

[topics."{output}"]
partitions = {PARTITIONS}
replication = {replication}
schema = "{schema}"

[topics."{dlq}"]
partitions = 1
replication = {replication}

[functions.{function}]
handler = "passthrough"
input = "{input}"
outputs = {{ out = "{output}" }}
guarantee = "{guarantee}"
ordering = "{ordering}"
dead_letter = "{dlq}"
"#,
            function = function,
            broker = bootstrap.replace(',', "\", \""),
            schema = schema_path.display(),
        ),
    )
    .expect("write config");

    let group = format!("kfn.{function}");
    let at_fault = match fault {
        Fault::Kill | Fault::Term => {
            let replica = Replica::start(&config, &dir.join("first.log"), true, 200);
            let at_fault =
                await_committed(&cluster, &group, &input, RECORDS as i64 / 4, Duration::from_secs(120)).await;
            if matches!(fault, Fault::Kill) {
                replica.kill9()
            } else {
                replica.terminate()
            }
            let replica = Replica::start(&config, &dir.join("second.log"), false, 200);
            await_count(&cluster, &output, RECORDS, Duration::from_secs(180)).await;
            replica.terminate();
            at_fault
        }
        Fault::KillLeadingBroker(kafka) => {
            // One replica throughout, slowed (5 ms a record, 3,334 records a partition) so the
            // fault lands mid-stream: the first chunks commit after about 10 s, 7 s remain.
            let replica = Replica::start(&config, &dir.join("replica.log"), false, 5000);
            let at_fault =
                await_committed(&cluster, &group, &input, RECORDS as i64 / 4, Duration::from_secs(120)).await;
            let victim = busiest_leader(&cluster, &[&input, &output]).await;
            eprintln!("killing broker {victim} at {at_fault} committed inputs");
            kafka.kill(victim as u32);
            // Two of three nodes keep acks=all writes going (min.insync.replicas=2).
            let late = Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("producer");
            let mut value = Vec::new();
            encoder.encode(&order(RECORDS), &mut value).expect("encode");
            inputs.push(value[5..].to_vec());
            let record = ProducerRecord::new(Some(format!("order-{RECORDS:05}").into()), Some(value.into()), 0);
            let tp = TopicPartition::new(&input, 0);
            late.send(&tp, vec![record]).await.expect("acks=all with one node of three down");
            kafka.restart(victim as u32).await.expect("broker restarts");
            await_count(&cluster, &output, inputs.len(), Duration::from_secs(180)).await;
            replica.terminate();
            // Leaders moved twice; the handler never saw an error of it.
            let dead_letters = read_all(&cluster, &dlq).await;
            assert!(dead_letters.is_empty(), "{} records dead-lettered through the failover", dead_letters.len());
            at_fault
        }
        Fault::CutConnections(proxy) => {
            // 2 ms a record (3,334 records a partition): seconds of requests of every kind
            // (fetch, produce, the transaction's, offset commits, heartbeats) to cut.
            let replica = Replica::start(&config, &dir.join("replica.log"), false, 2000);
            // The fault starts mid-stream: at the first commit.
            let at_fault = await_committed(&cluster, &group, &input, 1, Duration::from_secs(120)).await;
            proxy.cut_every(5);
            let cut_until =
                await_committed(&cluster, &group, &input, RECORDS as i64 * 3 / 4, Duration::from_secs(180)).await;
            proxy.cut_every(0);
            eprintln!("{} requests cut mid-way from {at_fault} to {cut_until} inputs committed", proxy.cuts());
            assert!(proxy.cuts() >= 5, "only {} requests were cut: the test proves little", proxy.cuts());
            await_count(&cluster, &output, RECORDS, Duration::from_secs(180)).await;
            replica.terminate();
            let dead_letters = read_all(&cluster, &dlq).await;
            assert!(dead_letters.is_empty(), "{} records dead-lettered over cut connections", dead_letters.len());
            at_fault
        }
    };
    assert!(at_fault < RECORDS as i64, "the stream finished before the fault: the test proves nothing");
    registry.stop().await;
    let outputs = read_all(&cluster, &output).await;
    (inputs, outputs, output)
}

/// Asserts that every input has exactly one output and nothing else was written.
fn assert_once_each(inputs: &[Vec<u8>], outputs: &[Vec<u8>]) {
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for o in outputs {
        *counts.entry(o.as_slice()).or_default() += 1;
    }
    let duplicated = counts.values().filter(|&&n| n > 1).count();
    let missing = inputs.iter().filter(|i| !counts.contains_key(i.as_slice())).count();
    assert_eq!((missing, duplicated), (0, 0), "{} outputs for {} inputs", outputs.len(), inputs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_kill_9_without_duplicates() {
    let (inputs, outputs, topic) = crash_and_restart(EXACTLY_ONCE, Fault::Kill).await;
    assert_once_each(&inputs, &outputs);
    assert_eq!(outputs.len(), inputs.len());
    // Apache Kafka's Java consumer, read_committed, sees the same: one output per input.
    let expected = RECORDS.to_string();
    let lines = kfn_tests::java::run("ReadCommitted", &[kfn_tests::broker(), &topic, &expected, "120"])
        .await
        .expect("the Java read_committed consumer");
    let java: Vec<Vec<u8>> = lines
        .lines()
        .filter_map(|l| l.split("\"value_hex\":\"").nth(1))
        .map(|hex| hex.trim_end_matches("\"}"))
        .map(|hex| (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect())
        .map(|value: Vec<u8>| value.get(5..).map(<[u8]>::to_vec).unwrap_or_default())
        .collect();
    assert_once_each(&inputs, &java);
    assert_eq!(java.len(), inputs.len(), "records the Java consumer read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_per_partition_survives_kill_9_without_duplicates() {
    let (inputs, outputs, _) = crash_and_restart(EXACTLY_ONCE_PER_PARTITION, Fault::Kill).await;
    assert_once_each(&inputs, &outputs);
    assert_eq!(outputs.len(), inputs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_with_key_ordering_survives_kill_9_without_duplicates() {
    // Keys in parallel: records finish out of offset order, yet only the finished prefix commits.
    let (inputs, outputs, _) = crash_and_restart(Setup { ordering: "key", ..EXACTLY_ONCE }, Fault::Kill).await;
    assert_once_each(&inputs, &outputs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_survives_kill_9_without_loss() {
    let (inputs, outputs, _) = crash_and_restart(AT_LEAST_ONCE, Fault::Kill).await;
    let seen: std::collections::HashSet<&[u8]> = outputs.iter().map(Vec::as_slice).collect();
    let missing = inputs.iter().filter(|i| !seen.contains(i.as_slice())).count();
    assert_eq!(missing, 0, "{} outputs for {} inputs", outputs.len(), inputs.len());
    assert!(outputs.len() >= inputs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_and_duplicates_nothing() {
    let (inputs, outputs, _) = crash_and_restart(AT_LEAST_ONCE, Fault::Term).await;
    assert_once_each(&inputs, &outputs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_sigterm_under_load_loses_and_duplicates_nothing() {
    let (inputs, outputs, _) = crash_and_restart(EXACTLY_ONCE, Fault::Term).await;
    assert_once_each(&inputs, &outputs);
    assert_eq!(outputs.len(), inputs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_per_partition_sigterm_under_load_loses_and_duplicates_nothing() {
    let (inputs, outputs, _) = crash_and_restart(EXACTLY_ONCE_PER_PARTITION, Fault::Term).await;
    assert_once_each(&inputs, &outputs);
    assert_eq!(outputs.len(), inputs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_loses_and_duplicates_nothing_while_connections_close_mid_request() {
    let (proxy, _broker) = kfn_tests::broker_behind_proxy().await.expect("broker behind proxy");
    let (inputs, outputs, _) = crash_and_restart(EXACTLY_ONCE, Fault::CutConnections(&proxy)).await;
    assert_once_each(&inputs, &outputs);
    assert_eq!(outputs.len(), inputs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_kill_9_of_the_leading_broker_of_three() {
    if kfn_tests::on_tansu() {
        eprintln!("skipped: tansu has no replication; this test runs on Apache Kafka");
        return;
    }
    let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
    let mut kafka =
        LocalKafka::start(KafkaOptions { nodes: 3, quiet, ..KafkaOptions::default() }).await.expect("three nodes");
    let (inputs, outputs, _) = crash_and_restart(EXACTLY_ONCE, Fault::KillLeadingBroker(&mut kafka)).await;
    // 10,001 inputs: the last was written while the node was down.
    assert_once_each(&inputs, &outputs);
    assert_eq!(outputs.len(), inputs.len());
    kafka.stop();
}

/// The member's transaction commits the chunk of a partition its worker still
/// holds, and neither writes nor commits one whose partition was lost while
/// the chunk waited (invoker/deliver/lease.rs): by then the partition may run
/// again from its committed offset, here or on another member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_transaction_drops_a_chunk_whose_partition_was_lost() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use kfn::invoker::committer::Committer;
    use kfn::invoker::deliver::{DeliverError, Lease, MemberTransaction};
    use kfn::invoker::egress::Outgoing;
    use kfn::kafka::group::coordinator::GroupClient;
    use kfn_tests::group::{await_members, Seen, TestMember};

    let cluster = kfn_tests::cluster();
    let input = kfn_tests::unique("lease-in");
    let output = kfn_tests::unique("lease-out");
    let group = kfn_tests::unique("lease-g");
    kfn_tests::create_topic(&input, 2).await.expect("input");
    kfn_tests::create_topic(&output, 1).await.expect("output");
    let member = TestMember::start(&cluster, &group, &input, "m", Seen::default());
    await_members(&[&member], Duration::from_secs(40), "the member holds both partitions", |now| now[0].len() == 2)
        .await;
    let committer = Arc::new(Committer::new(GroupClient::new(cluster.clone(), group.clone()), member.state.clone()));
    let config = MemberTransaction::producer_config("lease", &ProducerConfig::default());
    let metrics = kfn::metrics::Metrics::new().function("lease");
    let transaction =
        MemberTransaction::start("lease".into(), cluster.clone(), config, None, committer.clone(), metrics);
    // read_all strips five bytes of Confluent framing.
    let chunk = |partition: i32| -> Outgoing {
        let record = ProducerRecord::new(None, Some(Bytes::from(format!("-----from {partition}"))), 0);
        BTreeMap::from([((Arc::from(output.as_str()), 0), vec![record])])
    };
    let (held, lost) = (Lease::new(), Lease::new());
    lost.void();
    let (p0, p1) = (TopicPartition::new(&input, 0), TopicPartition::new(&input, 1));

    let dropped = transaction.deliver(&p1, &lost, chunk(1), Some(7)).await;
    assert!(matches!(dropped, Err(DeliverError::Stopped)), "{dropped:?}");
    transaction.deliver(&p0, &held, chunk(0), Some(5)).await.expect("the held partition's chunk commits");

    assert_eq!(committer.committed(&p0).await.expect("offset of p0"), Some(5));
    assert_eq!(committer.committed(&p1).await.expect("offset of p1"), None, "nothing committed for the lost partition");
    // The commit markers land after EndTxn answers: wait for the read_committed end to pass them.
    await_count(&cluster, &output, 1, Duration::from_secs(30)).await;
    assert_eq!(read_all(&cluster, &output).await, vec![b"from 0".to_vec()]);
    member.stop().await;
}
