"""Reads a whole topic with confluent-kafka (librdkafka) and prints one JSON line per record.

usage: read_topic.py BOOTSTRAP TOPIC ISOLATION(read_committed|read_uncommitted)
"""
import json
import sys

from confluent_kafka import Consumer, KafkaException, TopicPartition

bootstrap, topic, isolation = sys.argv[1:4]
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "kfn-test-reader",
    "enable.auto.commit": False,
    "isolation.level": isolation,
    "enable.partition.eof": True,
})
metadata = consumer.list_topics(topic, timeout=10)
partitions = sorted(metadata.topics[topic].partitions)
consumer.assign([TopicPartition(topic, p, 0) for p in partitions])  # 0 = from the beginning
done = set()
while len(done) < len(partitions):
    msg = consumer.poll(10)
    if msg is None:
        raise SystemExit("timed out waiting for records or end of partition")
    if msg.error():
        if msg.error().code() == -191:  # _PARTITION_EOF
            done.add(msg.partition())
            continue
        raise KafkaException(msg.error())
    print(json.dumps({
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": msg.key().decode() if msg.key() is not None else None,
        "value": msg.value().decode(errors="replace") if msg.value() is not None else None,
    }))
consumer.close()
