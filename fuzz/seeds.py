#!/usr/bin/env python3
"""Writes the seed corpora of the avro, order_body, registry_body and config
fuzz targets from the repository's real inputs (the shipped schemas, sample
order bodies, functions.toml). Run from anywhere with a Python that has
fastavro; the output is deterministic. The fetch seeds come from the
record_batches target (KFN_FUZZ_WRITE_SEEDS, see scripts/fuzz)."""

import hashlib
import io
import json
import pathlib
import random
import struct

import fastavro
import fastavro.utils

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"

# The order of functions/src/events.rs::schema_files and fuzz_targets/avro.rs.
SHIPPED = [
    "order_created", "order_validated", "order_rejected", "payment_processed", "payment_failed",
    "inventory_reserved", "shipment_created", "shipment_dispatched", "notification", "order_metrics",
    "product_sales", "order_status_changed", "order_status", "product_change",
    "order_view", "stock_reservation",
]


def write(target, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def framed(schema_id, parsed, record):
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return b"\x00" + struct.pack(">I", schema_id) + out.getvalue()


def avro():
    random.seed(19)
    for index, name in enumerate(SHIPPED):
        text = (ROOT / "schemas" / f"{name}.avsc").read_text()
        parsed = fastavro.parse_schema(json.loads(text))
        for record in fastavro.utils.generate_many(parsed, 2):
            value = framed(index, parsed, record)
            write("avro", b"\x00" + value)
            # The same datum under a writer schema taken from the input.
            write("avro", b"\x01" + text.encode() + b"\xff" + value)
    for path in sorted((ROOT / "schemas" / "evolution").glob("*.avsc")):
        text = path.read_text()
        parsed = fastavro.parse_schema(json.loads(text))
        for record in fastavro.utils.generate_many(parsed, 2):
            write("avro", b"\x01" + text.encode() + b"\xff" + framed(100, parsed, record))


def order_body():
    good = {
        "customer_id": " c-1 ",
        "items": [
            {"product_id": "SKU-001", "quantity": 2, "unit_price": 19.99},
            {"product_id": "SKU-008", "quantity": 3, "unit_price": "4.99"},
            {"product_id": "SKU-012", "quantity": 1, "unit_price": 5e1},
        ],
        "shipping_address": "1 Main St, Springfield",
    }
    bodies = [
        good,
        {**good, "items": [{"product_id": "SKU-001", "quantity": 10000, "unit_price": "99999999.99"}]},
        {**good, "items": []},
        {**good, "customer_id": ""},
        {**good, "items": [{"product_id": "SKU-001", "quantity": 0, "unit_price": -1}]},
        {**good, "items": [{"product_id": "SKU-001", "quantity": 1.5, "unit_price": "1.001"}]},
        [1, 2],
    ]
    for body in bodies:
        write("order_body", json.dumps(body).encode())
    write("order_body", b'{"customer_id": "c-1", "items": [')


def registry_body():
    for index, name in enumerate(["order_created", "order_status", "order_metrics", "product_change"]):
        text = (ROOT / "schemas" / f"{name}.avsc").read_text()
        write("registry_body", bytes([index]) + json.dumps({"schema": text}).encode())
        write("registry_body", bytes([index + 4]) + json.dumps({"schema": text, "schemaType": "AVRO", "references": []}).encode())
    for path in sorted((ROOT / "schemas" / "evolution").glob("*.avsc")):
        write("registry_body", b"\x00" + json.dumps({"schema": path.read_text()}).encode())
    write("registry_body", b"\x00" + json.dumps({"schema": '"int"', "schemaType": "PROTOBUF"}).encode())
    write("registry_body", b"\x00" + json.dumps({"compatibility": "FULL_TRANSITIVE"}).encode())


def config():
    text = (ROOT / "functions.toml").read_bytes()
    write("config", text)
    # The first sections alone, and a file cut short inside a table.
    write("config", text[: len(text) // 3])
    write("config", b'[runtime]\nbrokers = ["127.0.0.1:9092"]\nsession_timeout = "10s"\n')


if __name__ == "__main__":
    avro()
    order_body()
    registry_body()
    config()
