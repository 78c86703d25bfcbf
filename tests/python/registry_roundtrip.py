"""Drives kfn's schema registry with confluent-kafka's own registry client and
Avro serde, unchanged, and prints one JSON object with what it saw.

usage: registry_roundtrip.py REGISTRY_URL TOPIC

- serializes a record with AvroSerializer (auto-registers TOPIC-value);
- deserializes it with a fresh client (fetches the schema by id);
- reads the subject back (latest version, versions, lookup, compatibility);
- registers an incompatible schema and an invalid one, and reports the errors.
"""
import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

url, topic = sys.argv[1:3]
subject = f"{topic}-value"

SCHEMA = json.dumps({
    "type": "record",
    "name": "OrderCreated",
    "namespace": "kfn.test",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
})
# A new field without a default: old data cannot be read with it (BACKWARD).
INCOMPATIBLE = json.dumps({
    "type": "record",
    "name": "OrderCreated",
    "namespace": "kfn.test",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "customer", "type": "string"},
    ],
})


def error_of(call):
    try:
        call()
    except SchemaRegistryError as e:
        return {"status": e.http_status_code, "code": e.error_code, "message": e.error_message}
    return None


writer_client = SchemaRegistryClient({"url": url})
serializer = AvroSerializer(writer_client, SCHEMA)
ctx = SerializationContext(topic, MessageField.VALUE)
record = {"order_id": "o-1", "quantity": 3, "created_at": 1_700_000_000_000, "note": "fragile"}
payload = serializer(record, ctx)

# A second client has no cache: it must fetch the writer's schema by id.
reader_client = SchemaRegistryClient({"url": url})
decoded = AvroDeserializer(reader_client)(payload, ctx)
framed_id = int.from_bytes(payload[1:5], "big")
fetched = reader_client.get_schema(framed_id)
latest = reader_client.get_latest_version(subject)
looked_up = reader_client.lookup_schema(subject, Schema(SCHEMA, "AVRO"))

print(json.dumps({
    "magic": payload[0],
    "framed_id": framed_id,
    "decoded": {**decoded, "created_at": str(decoded["created_at"])},
    "schema_by_id": json.loads(fetched.schema_str),
    "schema_types": reader_client.get_schema_types(),
    "latest": {"id": latest.schema_id, "version": latest.version, "subject": latest.subject},
    "lookup": {"id": looked_up.schema_id, "version": looked_up.version},
    "versions": reader_client.get_versions(subject),
    "subjects_of_id": reader_client.get_subjects_by_schema_id(framed_id),
    "register_again": writer_client.register_schema(subject, Schema(SCHEMA, "AVRO")),
    "compatibility": reader_client.get_compatibility(),
    "incompatible_is_compatible": reader_client.test_compatibility(subject, Schema(INCOMPATIBLE, "AVRO")),
    "incompatible": error_of(lambda: reader_client.register_schema(subject, Schema(INCOMPATIBLE, "AVRO"))),
    "invalid": error_of(lambda: reader_client.register_schema(subject, Schema('{"type": "recrd"}', "AVRO"))),
    "unknown_id": error_of(lambda: SchemaRegistryClient({"url": url}).get_schema(999_999)),
    "unknown_subject": error_of(lambda: reader_client.get_latest_version(f"{subject}-missing")),
    "set_compatibility": reader_client.set_compatibility(subject, "NONE"),
    "subject_compatibility": reader_client.get_compatibility(subject),
    "after_none": reader_client.register_schema(subject, Schema(INCOMPATIBLE, "AVRO")),
}))
