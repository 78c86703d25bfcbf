"""Joins a consumer group with confluent-kafka (librdkafka) and prints its stable assignment.

usage: group_member.py BOOTSTRAP TOPIC GROUP PARTITIONS
Polls until it has held PARTITIONS partitions for 3 seconds, prints the
partitions as a JSON list on the last line, then leaves the group.
"""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, wanted = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "partition.assignment.strategy": "range",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    **({"debug": "cgrp,protocol"} if __import__("os").environ.get("KFN_PY_DEBUG") else {}),
})
consumer.subscribe([topic])
deadline = time.time() + 60
held, since = None, time.time()
while time.time() < deadline:
    consumer.poll(0.2)
    now = sorted(p.partition for p in consumer.assignment())
    if now != held:
        held, since = now, time.time()
    elif len(held) == wanted and time.time() - since >= 3:
        break
print(json.dumps(held or []))
consumer.close()
