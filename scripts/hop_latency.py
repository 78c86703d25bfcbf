#!/usr/bin/env python3
"""Where an order's time goes, hop by hop, in a running order system.

    python scripts/hop_latency.py [--orders 40] [--gap 0.2] [--brokers 127.0.0.1:9092] [--http http://127.0.0.1:8080]

Run it beside `kfn dev` (or any running order system). It POSTs orders one at
a time and watches the pipeline's topics from their ends with librdkafka
(confluent-kafka, as scripts/test installs it), twice over: read_uncommitted
sees a hop's record when it is written (inside its transaction),
read_committed when the transaction commits. Per hop it prints

  <topic> visible -> <next> appended   the next function's fetch, handler and write
  <next> appended -> visible           that function's transaction commit

as p50, p90 and max in milliseconds, and the whole POST -> dispatched time.
Records carry their input's timestamp through kfn, so the times here are
when the watchers saw each record, not record timestamps.
"""

import argparse
import json
import threading
import time
import urllib.request
import uuid

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

STAGES = ["orders.created", "orders.validated", "payments.processed", "shipments.created", "shipments.dispatched"]


def watch(brokers, topic, isolation, seen, ready, stop):
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "hop-latency-" + uuid.uuid4().hex,
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
    consumer.poll(0.5)
    ready.release()
    while not stop.is_set():
        message = consumer.poll(0.05)
        if message is None or message.error() or message.key() is None:
            continue
        seen.setdefault(message.key().decode(), time.time())
    consumer.close()


def post_order(http, n):
    body = json.dumps(
        {
            "customer_id": f"hop-latency-{n}",
            "items": [{"product_id": "SKU-001", "quantity": 1, "unit_price": "19.99"}],
            "shipping_address": "1 Main St",
        }
    ).encode()
    request = urllib.request.Request(f"{http}/orders", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())["order_id"]


def summary(name, values):
    values = sorted(values)
    p50, p90 = values[len(values) // 2], values[int(len(values) * 0.9)]
    print(f"{name:60} p50 {p50:7.1f}  p90 {p90:7.1f}  max {values[-1]:7.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two orders")
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--http", default="http://127.0.0.1:8080")
    args = parser.parse_args()

    committed = {t: {} for t in STAGES}
    written = {t: {} for t in STAGES}
    stop, ready = threading.Event(), threading.Semaphore(0)
    watchers = [
        threading.Thread(target=watch, args=(args.brokers, t, iso, seen[t], ready, stop))
        for t in STAGES
        for iso, seen in (("read_committed", committed), ("read_uncommitted", written))
    ]
    for w in watchers:
        w.start()
    for _ in watchers:
        ready.acquire()

    posted = {}
    for n in range(args.orders):
        start = time.time()
        posted[post_order(args.http, n)] = start
        time.sleep(args.gap)
    deadline = time.time() + 30
    while time.time() < deadline and not all(o in committed[STAGES[-1]] for o in posted):
        time.sleep(0.1)
    stop.set()
    for w in watchers:
        w.join()

    done = [o for o in posted if all(o in committed[t] and o in written[t] for t in STAGES)]
    print(f"{len(done)} of {len(posted)} orders seen on every topic")
    if not done:
        return
    ms = lambda a, b: (b - a) * 1000  # noqa: E731
    summary("POST -> orders.created visible", [ms(posted[o], committed[STAGES[0]][o]) for o in done])
    for a, b in zip(STAGES, STAGES[1:]):
        summary(f"{a} visible -> {b} appended", [ms(committed[a][o], written[b][o]) for o in done])
        summary(f"  {b} appended -> visible", [ms(written[b][o], committed[b][o]) for o in done])
    summary("POST -> shipments.dispatched visible", [ms(posted[o], committed[STAGES[-1]][o]) for o in done])


if __name__ == "__main__":
    main()
