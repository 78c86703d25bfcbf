//! Every compression codec, both ways, with clients we did not write: what kfn
//! compresses (LZ4 and zstd in pure Rust, kafka/compression.rs) is read by
//! Apache Kafka's Java client and by confluent-kafka (librdkafka), and what
//! librdkafka compresses is read by kfn.

use std::collections::BTreeMap;

use bytes::Bytes;
use kfn::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use kfn::kafka::fetch::Isolation;
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Compression, Producer, ProducerConfig, ProducerRecord};
use serde_json::Value;

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "none"),
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];
const PER_CODEC: usize = 300;

fn value(codec: &str, i: usize) -> String {
    format!("{codec}-{i} ") + &"order line ".repeat(20)
}

/// Each codec's values, in the order written.
fn expected() -> BTreeMap<String, Vec<String>> {
    CODECS.iter().map(|(_, c)| (c.to_string(), (0..PER_CODEC).map(|i| value(c, i)).collect())).collect()
}

/// Values grouped by key (the codec), in offset order.
fn by_key(records: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in records {
        out.entry(key).or_default().push(value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_kfn_compresses_with_every_codec_java_and_librdkafka_read() {
    let topic = kfn_tests::unique("codecs-out");
    kfn_tests::create_topic(&topic, 1).await.expect("topic");
    let tp = TopicPartition::new(topic.clone(), 0);
    for (compression, codec) in CODECS {
        let producer = Producer::new(kfn_tests::cluster(), ProducerConfig { compression, ..ProducerConfig::default() })
            .await
            .expect("producer");
        // Several sends, so each codec writes more than one batch.
        for chunk in (0..PER_CODEC).collect::<Vec<_>>().chunks(100) {
            let records = chunk
                .iter()
                .map(|&i| {
                    ProducerRecord::new(Some(Bytes::from(codec)), Some(Bytes::from(value(codec, i))), 1_700_000_000_000)
                })
                .collect();
            producer.send(&tp, records).await.unwrap_or_else(|e| panic!("send with {codec}: {e:#}"));
        }
    }
    let total = (CODECS.len() * PER_CODEC).to_string();

    let java = kfn_tests::java::run("ReadCommitted", &[kfn_tests::broker(), &topic, &total, "60"])
        .await
        .expect("the Java client reads every codec kfn wrote");
    let java = by_key(java.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter_map(|v| {
        let key = v["key"].as_str()?.to_string();
        let hex = v["value_hex"].as_str()?;
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
        Some((key, String::from_utf8(bytes).expect("utf-8")))
    }));
    assert_eq!(java, expected(), "what the Java client read");

    let args = [kfn_tests::broker().to_string(), topic.clone(), "read_uncommitted".to_string()];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kfn_tests::python::run("read_topic.py", &args)
    })
    .await
    .expect("join")
    .expect("librdkafka reads every codec kfn wrote");
    let librdkafka = by_key(out.lines().map(|l| serde_json::from_str::<Value>(l).expect("json")).map(|v| {
        (v["key"].as_str().unwrap_or_default().to_string(), v["value"].as_str().unwrap_or_default().to_string())
    }));
    assert_eq!(librdkafka, expected(), "what librdkafka read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_librdkafka_compresses_with_every_codec_kfn_reads() {
    let topic = kfn_tests::unique("codecs-in");
    kfn_tests::create_topic(&topic, 1).await.expect("topic");
    let args = [kfn_tests::broker().to_string(), topic.clone(), PER_CODEC.to_string()];
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kfn_tests::python::run("produce_codecs.py", &args)
    })
    .await
    .expect("join")
    .expect("librdkafka writes with every codec");

    let cluster = kfn_tests::cluster();
    let tp = TopicPartition::new(topic.clone(), 0);
    let end = list_offset(&cluster, &tp, LogEnd::Latest, Isolation::ReadCommitted).await.expect("end offset");
    assert_eq!(end, (CODECS.len() * PER_CODEC) as i64, "records written");
    let mut reader = PartitionReader::new(cluster, tp, 0, Isolation::ReadCommitted, LogEnd::Earliest);
    let mut read = Vec::new();
    while reader.position() < end {
        let batch = reader.next().await.expect("kfn decodes every codec librdkafka wrote");
        for r in batch.records {
            let text = |b: Option<Bytes>| String::from_utf8(b.unwrap_or_default().to_vec()).expect("utf-8");
            read.push((text(r.key), text(r.value)));
        }
    }
    assert_eq!(by_key(read), expected(), "what kfn read");
}
