//! A broker restart (kill -9, then start again on the same storage) does not
//! make kfn exit or lose records: members reconnect, rejoin and go on.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kfn::dev::apache_kafka::{KafkaOptions, LocalKafka};
use kfn::dev::{ensure_installed, BrokerKind, LocalBroker, Storage};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn::kafka::{Admin, Cluster, ConnectOptions, NewTopic};
use kfn_tests::group::{await_members, Seen, TestMember};

async fn produce(producer: &Producer, topic: &str, tag: &str) -> Vec<String> {
    let mut values = Vec::new();
    for p in 0..3 {
        let records: Vec<_> = (0..10)
            .map(|i| {
                let v = format!("{tag}-{p}-{i}");
                values.push(v.clone());
                ProducerRecord::new(None, Some(Bytes::from(v)), 0)
            })
            .collect();
        producer.send(&TopicPartition::new(topic, p), records).await.expect("produce");
    }
    values
}

async fn await_seen(seen: &Seen, expected: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got: BTreeSet<String> = seen
            .lock()
            .expect("lock")
            .values()
            .flatten()
            .filter_map(|v| v.split_once(':').map(|(_, v)| v.to_string()))
            .collect();
        let missing: Vec<_> = expected.iter().filter(|e| !got.contains(*e)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "records missing after the restart: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A broker that can crash and come back on the data it had.
enum Restartable {
    /// Apache Kafka: one node, its log on disk.
    Kafka(LocalKafka),
    /// tansu keeps data in memory, so it restarts on S3 (moto) storage.
    Tansu {
        broker: Option<LocalBroker>,
        binary: std::path::PathBuf,
        port: u16,
        storage: Storage,
        _s3: kfn_tests::moto::S3,
    },
}

impl Restartable {
    async fn start() -> Self {
        if kfn_tests::broker_kind() == BrokerKind::Kafka {
            let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
            return Restartable::Kafka(
                LocalKafka::start(KafkaOptions { quiet, ..KafkaOptions::default() }).await.expect("broker"),
            );
        }
        let bucket = kfn_tests::unique("kfn").to_lowercase().replace('_', "-");
        let s3 = kfn_tests::moto::S3::start(&bucket).await.expect("moto S3 server");
        let storage = Storage::S3 { bucket: s3.bucket.clone(), endpoint: s3.endpoint.clone() };
        let binary = ensure_installed().expect("tansu");
        let port = kfn::dev::ports::free_port().expect("port");
        let broker = LocalBroker::start(binary.clone(), port, storage.clone(), true).await.expect("broker");
        Restartable::Tansu { broker: Some(broker), binary, port, storage, _s3: s3 }
    }

    fn bootstrap(&self) -> Vec<String> {
        match self {
            Restartable::Kafka(k) => k.addrs(),
            Restartable::Tansu { port, .. } => vec![format!("127.0.0.1:{port}")],
        }
    }

    /// kill -9, then start again on the same data.
    async fn crash_and_restart(&mut self) {
        match self {
            Restartable::Kafka(k) => {
                k.kill(1);
                k.restart(1).await.expect("broker again");
            }
            Restartable::Tansu { broker, binary, port, storage, .. } => {
                if let Some(b) = broker.take() {
                    b.kill();
                }
                *broker =
                    Some(LocalBroker::start(binary.clone(), *port, storage.clone(), true).await.expect("broker again"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_survives_a_broker_restart() {
    let mut broker = Restartable::start().await;
    let cluster = Cluster::new(broker.bootstrap(), ConnectOptions::default());
    let topic = "restart".to_string();
    Admin::new(cluster.clone())
        .create_topics(&[NewTopic { name: topic.clone(), partitions: 3, replication: 1, configs: Default::default() }])
        .await
        .expect("topic");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("producer");
    let seen = Seen::default();
    let member = TestMember::start(&cluster, "restart-group", &topic, "m", seen.clone());
    let mut expected = produce(&producer, &topic, "before").await;
    await_seen(&seen, &expected).await;

    broker.crash_and_restart().await;
    expected.extend(produce(&producer, &topic, "after").await);
    await_seen(&seen, &expected).await;
    await_members(&[&member], Duration::from_secs(60), "the member holds its partitions again", |now| {
        now[0].len() == 3
    })
    .await;
    member.stop().await;
}
