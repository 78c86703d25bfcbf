"""Writes records with every compression codec librdkafka has, one producer per codec.

usage: produce_codecs.py BOOTSTRAP TOPIC COUNT

For each codec in none, gzip, snappy, lz4, zstd writes COUNT records to partition 0,
key "<codec>", value "<codec>-<i> <padding>" (padding makes each batch worth compressing),
and prints {"codec": ..., "count": COUNT} once the broker acknowledged them all.
"""
import json
import sys

from confluent_kafka import Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "enable.idempotence": True,
        "linger.ms": 20,
    })
    failed = []
    for i in range(count):
        value = f"{codec}-{i} " + "order line " * 20
        producer.produce(topic, key=codec, value=value, partition=0,
                         on_delivery=lambda err, _msg: failed.append(err) if err else None)
    producer.flush(30)
    if failed or len(producer) > 0:
        raise SystemExit(f"{codec}: {len(failed)} failed, {len(producer)} undelivered: {failed[:3]}")
    print(json.dumps({"codec": codec, "count": count}), flush=True)
