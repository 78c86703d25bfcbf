"""Drives kfn's schema registry over https with basic auth, using
confluent-kafka's own SchemaRegistryClient and Avro serde, unchanged, and
prints one JSON object with what it saw.

usage: registry_tls_roundtrip.py REGISTRY_URL TOPIC CA_FILE USER:PASSWORD

- serializes a record with AvroSerializer (auto-registers TOPIC-value) over
  https, trusting CA_FILE (`ssl.ca.location`), as USER (`basic.auth.user.info`);
- deserializes it with a fresh client (fetches the schema by id);
- reports the errors of a wrong password, of no credentials, and of a client
  that does not trust CA_FILE.
"""
import json
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

url, topic, ca, user_info = sys.argv[1:5]
subject = f"{topic}-value"
user = user_info.split(":", 1)[0]

SCHEMA = json.dumps({
    "type": "record",
    "name": "PaymentAuthorized",
    "namespace": "kfn.test",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "cents", "type": "long"},
    ],
})


def client(**overrides):
    conf = {"url": url, "ssl.ca.location": ca, "basic.auth.user.info": user_info}
    conf.update(overrides)
    return SchemaRegistryClient({k: v for k, v in conf.items() if v is not None})


def error_of(call):
    try:
        call()
    except SchemaRegistryError as e:
        return {"status": e.http_status_code, "code": e.error_code, "message": e.error_message}
    except Exception as e:  # a TLS failure is not a SchemaRegistryError
        return {"exception": type(e).__name__, "message": str(e)}
    return None


ctx = SerializationContext(topic, MessageField.VALUE)
payload = AvroSerializer(client(), SCHEMA)({"order_id": "o-7", "cents": 1299}, ctx)
decoded = AvroDeserializer(client())(payload, ctx)
framed_id = int.from_bytes(payload[1:5], "big")
latest = client().get_latest_version(subject)

print(json.dumps({
    "magic": payload[0],
    "framed_id": framed_id,
    "decoded": decoded,
    "latest": {"id": latest.schema_id, "version": latest.version, "subject": latest.subject},
    "wrong_password": error_of(lambda: client(**{"basic.auth.user.info": f"{user}:not-the-password"}).get_schema(framed_id)),
    "no_credentials": error_of(lambda: client(**{"basic.auth.user.info": None}).get_schema(framed_id)),
    "no_ca": error_of(lambda: client(**{"ssl.ca.location": None}).get_schema(framed_id)),
}))
