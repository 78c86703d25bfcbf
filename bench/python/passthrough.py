"""The OrderCreated passthrough as a Python team would write it on confluent-kafka.

Consumes BENCH_INPUT, decodes each value with AvroDeserializer (the writer's
schema from the registry), encodes it again with AvroSerializer (the schema
in BENCH_SCHEMA, registered for BENCH_OUTPUT) and produces it with the
input's key. Offsets are auto-committed. Runs until killed.
"""

import os
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> None:
    brokers = os.environ["BENCH_BROKERS"]
    source, sink = os.environ["BENCH_INPUT"], os.environ["BENCH_OUTPUT"]
    with open(os.environ["BENCH_SCHEMA"], encoding="utf-8") as f:
        schema = f.read()
    registry = SchemaRegistryClient({"url": os.environ["BENCH_REGISTRY"]})
    deserialize = AvroDeserializer(registry)
    serialize = AvroSerializer(registry, schema)
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": os.environ["BENCH_GROUP"],
        "auto.offset.reset": "earliest",
        # The local broker completes a new group's first join after half the session timeout.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000,
    })
    producer = Producer({"bootstrap.servers": brokers, "compression.type": "lz4", "linger.ms": 5})
    consumer.subscribe([source])
    read_ctx = SerializationContext(source, MessageField.VALUE)
    write_ctx = SerializationContext(sink, MessageField.VALUE)
    while True:
        for message in consumer.consume(num_messages=500, timeout=0.1):
            if message.error():
                print(f"consume failed: {message.error()}", file=sys.stderr)
                continue
            order = deserialize(message.value(), read_ctx)
            value = serialize(order, write_ctx)
            while True:
                try:
                    producer.produce(sink, value=value, key=message.key())
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)


if __name__ == "__main__":
    main()
