"""A transactional producer (confluent-kafka, i.e. librdkafka) driven line by line on stdin.

usage: txn_producer.py BOOTSTRAP TOPIC TRANSACTIONAL_ID

Prints {"ready": true} after init_transactions, then for each command, once done,
{"ok": "<command>"}:
  begin                          begin a transaction
  send PARTITION KEY VALUE_HEX   produce to PARTITION (key as UTF-8, value from hex)
  flush                          wait until every sent record is in the log
  commit | abort                 end the transaction
The Java peer (tests/java, dev.kfn.peers.TxnProducer) speaks the same protocol.
"""
import json
import sys

from confluent_kafka import KafkaException, Producer

bootstrap, topic, transactional_id = sys.argv[1:4]
producer = Producer({
    "bootstrap.servers": bootstrap,
    "transactional.id": transactional_id,
    "linger.ms": 0,
})


def say(obj):
    print(json.dumps(obj), flush=True)


producer.init_transactions(30)
say({"ready": True})
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    command = words[0]
    try:
        if command == "begin":
            producer.begin_transaction()
        elif command == "send":
            partition, key, value_hex = int(words[1]), words[2], words[3]
            producer.produce(topic, key=key.encode(), value=bytes.fromhex(value_hex), partition=partition)
        elif command == "flush":
            remaining = producer.flush(30)
            if remaining:
                raise SystemExit(f"{remaining} records not delivered within 30 s")
        elif command == "commit":
            producer.commit_transaction(30)
        elif command == "abort":
            producer.abort_transaction(30)
        else:
            raise SystemExit(f"unknown command {command!r}")
    except KafkaException as e:
        raise SystemExit(f"{command}: {e}")
    say({"ok": command})
