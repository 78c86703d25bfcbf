//! One fetch per broker (kafka-client/src/fetch/broker.rs) when one process
//! reads a partition twice: two functions reading the same topic, or a
//! function and a table follower. A Fetch names a partition once, so each
//! reader needs its own fetcher; sharing one, the second reader's request
//! replaced the first's, which saw its fetcher as stopped and retried after
//! a pause (hundreds of milliseconds to seconds per hop of the order
//! system, where five functions read orders.created).

use bytes::Bytes;
use kfn::kafka::fetch::broker::FetcherKey;
use kfn::kafka::fetch::{decode_partition, FetchLimits, Isolation, Wanted};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_of_one_partition_in_one_process_are_each_answered() {
    let cluster = kfn_tests::cluster();
    let topic = kfn_tests::unique("two-readers");
    kfn_tests::create_topic(&topic, 1).await.expect("create the topic");
    let tp = TopicPartition::new(&topic, 0);
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("producer");
    let record = ProducerRecord::new(Some(Bytes::from("k")), Some(Bytes::from("v")), 1_700_000_000_000);
    producer.send(&tp, vec![record]).await.expect("send");

    let info = cluster.topic(&topic).await.expect("metadata");
    let leader = cluster.leader_addr(&topic, 0).await.expect("leader");
    let limits = FetchLimits::default();
    let key = FetcherKey::new(leader, Isolation::ReadCommitted, &limits);
    let first = cluster.fetch_slot(key.clone(), tp.clone());
    let second = cluster.fetch_slot(key, tp.clone());
    let wanted = Wanted { topic_id: info.id, fetch_offset: 0, partition_max_bytes: limits.partition_max_bytes };
    // Both ask before either is answered, as two functions' workers do.
    let (one, two) = tokio::join!(first.fetch(wanted, None), second.fetch(wanted, None));
    for (reader, answer) in [("first", one), ("second", two)] {
        let data = answer.unwrap_or_else(|e| panic!("the {reader} reader of {tp} was not answered: {e}"));
        let decoded = decode_partition(&topic, &data, 0, Isolation::ReadCommitted).expect("decode");
        assert_eq!(decoded.records.len(), 1, "the {reader} reader's records");
    }
}
