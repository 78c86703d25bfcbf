//! Kafka Connect on the real stack: PostgreSQL (Debian's), a Kafka Connect 4.4
//! worker with Debezium's connectors, the shared Apache Kafka, all started by
//! the project's own files (kfn_tests::connect); kfn reads what Debezium
//! writes, and Debezium's JDBC sink writes orders back to PostgreSQL.

use std::time::Duration;

use bytes::Bytes;
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn_functions::events::{OrderCreated, OrderItem, ProductChange, RejectionReason};
use kfn_functions::validate_order::{check, validate_order, Products};
use kfn_sdk::{Ctx, Emit};
use kfn_tests::app::{header, now_ms, Recorder, TestApp, DEADLINE};
use rust_decimal::Decimal;

const APP: &str = r#"
[topics."shop.products"]
partitions = 1
replication = 1
cleanup_policy = "compact"
format = "json"
schema = "schemas/product_change.avsc"

[topics."garbage-{s}"]
partitions = 1
replication = 1
format = "json"
schema = "schemas/product_change.avsc"

[topics."dlq-{s}"]
partitions = 1
replication = 1

[functions.catalog-{s}]
handler = "catalog"
input = "shop.products"
dead_letter = "dlq-{s}"

[functions.garbage-{s}]
handler = "catalog"
input = "garbage-{s}"
dead_letter = "dlq-{s}"
"#;

#[tokio::test]
async fn a_price_and_stock_changed_in_postgresql_reach_a_json_topic_function_through_debezium() {
    let stack = kfn_tests::connect::stack();
    let seen = Recorder::<ProductChange>::new();
    let mut handlers = kfn_sdk::Registry::default();
    let recorded = seen.clone();
    handlers.handler("catalog", move |_ctx: Ctx, change: ProductChange| {
        recorded.push(change);
        async { Ok(Emit::none()) }
    });
    let app = TestApp::start(APP, handlers).await.expect("app");

    // Debezium's snapshot: today's catalog, read from the table the SQL of connect/sql seeded.
    let snapshot = seen
        .wait_until("the snapshot of the 12 products", |changes| changes.iter().filter(|c| c.op == "r").count() >= 12)
        .await
        .expect("snapshot");
    let before = snapshot
        .iter()
        .find_map(|c| c.after.clone().filter(|p| p.product_id == "SKU-003"))
        .expect("SKU-003 in the snapshot");
    assert_eq!((before.price.as_str(), before.stock), ("34.50", 120), "the seed is catalog.rs's");

    stack
        .postgres
        .psql("UPDATE shop.products SET price = 23.45, stock = 9 WHERE product_id = 'SKU-003'")
        .await
        .expect("update");
    let changes = seen
        .wait_until("the update of SKU-003", |changes| {
            changes.iter().any(|c| c.op == "u" && c.after.as_ref().is_some_and(|p| p.product_id == "SKU-003"))
        })
        .await
        .expect("update reaches the function");
    // Other tests of this binary change their own products in the same table meanwhile.
    let is_sku_003 = |c: &&ProductChange| c.after.as_ref().is_some_and(|p| p.product_id == "SKU-003");
    let update = changes.iter().filter(is_sku_003).find(|c| c.op == "u").expect("an update");
    let after = update.after.as_ref().expect("after");
    assert_eq!((after.price.as_str(), after.stock), ("23.45", 9));
    assert_eq!(update.before.as_ref(), Some(&before), "REPLICA IDENTITY FULL: the old row comes along");

    // The record on the topic is keyed by the product id, as Connect's ExtractField made it.
    let mut watcher = app.watch("shop.products").await.expect("watch");
    let records = watcher
        .wait_until("the update's record", |records| {
            records.iter().any(|(_, r)| r.value.as_ref().is_some_and(|v| v.windows(5).any(|w| w == b"23.45")))
        })
        .await
        .expect("record");
    let (_, record) = records.iter().rev().find(|(_, r)| r.key.as_deref() == Some(b"SKU-003".as_slice())).expect("key");
    assert!(record.value.as_ref().is_some_and(|v| v.starts_with(b"{")), "JSON without Connect's schema wrapper");

    // What is not JSON, or not a change event, is dead-lettered with the cause, as on Avro topics.
    let garbage = app.name("garbage-{s}");
    let values: [&[u8]; 2] = [b"\x00\x00\x00\x00\x07avro?", br#"{"op": 5}"#];
    let records = values
        .iter()
        .map(|v| ProducerRecord::new(Some(Bytes::from_static(b"k")), Some(Bytes::copy_from_slice(v)), now_ms()))
        .collect();
    app.produce_records(&garbage, 0, records).await.expect("produce");
    let mut dlq = app.watch(&app.name("dlq-{s}")).await.expect("watch dlq");
    let letters = dlq.wait_for_count(2).await.expect("dead letters");
    let causes: Vec<_> = letters.iter().map(|(_, r)| header(r, "kfn.error.message").unwrap_or_default()).collect();
    assert!(causes[0].starts_with("not JSON"), "{causes:?}");
    assert!(causes[1].contains("cannot decode the JSON value as com.tutorial.orders.ProductChange"), "{causes:?}");
    assert!(letters.iter().all(|(_, r)| header(r, "kfn.error.kind") == Some("undecodable")));
    app.stop().await;
}

#[tokio::test]
async fn an_order_written_to_orders_view_is_upserted_into_postgresql_by_the_jdbc_sink() {
    let stack = kfn_tests::connect::stack();
    let cluster = kfn_tests::cluster();
    let producer = Producer::new(cluster, ProducerConfig::default()).await.expect("producer");
    let order = kfn_tests::unique("order");
    // The row as JsonConverter reads it with schemas: the sink needs the schema to map columns.
    let row = |status: &str| {
        let schema = r#"{"type":"struct","fields":[{"field":"order_id","type":"string"},{"field":"customer_id","type":"string"},{"field":"total","type":"string"},{"field":"status","type":"string"},{"field":"updated_at","type":"int64"}]}"#;
        let payload = serde_json::json!({
            "order_id": order, "customer_id": "c-1", "total": "42.00", "status": status, "updated_at": now_ms()
        });
        let value = format!(r#"{{"schema":{schema},"payload":{payload}}}"#);
        ProducerRecord::new(Some(Bytes::from(order.clone())), Some(Bytes::from(value)), now_ms())
    };
    let tp = TopicPartition::new("orders.view", 0);
    let query = format!("SELECT status, total FROM orders.orders WHERE order_id = '{order}'");
    for status in ["payment_processed", "dispatched"] {
        producer.send(&tp, vec![row(status)]).await.expect("produce");
        let found = await_row(&stack.postgres, &query, &format!("{status}|42.00")).await;
        assert_eq!(found, format!("{status}|42.00"));
    }
    let count = stack.postgres.psql(&format!("SELECT count(*) FROM orders.orders WHERE order_id = '{order}'")).await;
    assert_eq!(count.expect("count"), "1", "upserted by order id, not appended");
    let status = stack.client().status("orders-to-postgres").await.expect("status");
    assert!(status.running(), "{}", status.summary());
}

/// Polls `query` until it returns `expected` (the sink writes on its own schedule), or fails after [`DEADLINE`].
async fn await_row(db: &kfn::dev::postgres::LocalPostgres, query: &str, expected: &str) -> String {
    await_row_where(db, query, |row| row == expected).await
}

/// Polls `query` until its answer satisfies `done`, or fails after [`DEADLINE`].
async fn await_row_where(db: &kfn::dev::postgres::LocalPostgres, query: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        last = db.psql(query).await.expect("query");
        if done(&last) {
            return last;
        }
        // PostgreSQL has no notification for rows Connect inserts; a short poll of a local query.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{query}: no wanted answer within {DEADLINE:?}, last {last:?}");
}

const VALIDATION: &str = r#"
[topics."shop.products"]
partitions = 1
replication = 1
cleanup_policy = "compact"
format = "json"
schema = "schemas/product_change.avsc"

[topics."created-{s}"]
partitions = 2
replication = 1
schema = "schemas/order_created.avsc"

[topics."validated-{s}"]
partitions = 2
replication = 1
schema = "schemas/order_validated.avsc"

[topics."rejected-{s}"]
partitions = 2
replication = 1
schema = "schemas/order_rejected.avsc"

[functions.validation-{s}]
handler = "validate_order"
input = "created-{s}"
outputs = { validated = "validated-{s}", rejected = "rejected-{s}" }
tables = { catalog = "shop.products" }
"#;

/// What validation decided for one order: (order id, the rule it broke, if any, and how).
type Verdict = (String, Option<(RejectionReason, String)>);

/// The order system's validate_order, recording each verdict as the handler's
/// table lookups saw it (the outputs go to the topics as in production).
fn validation(verdicts: std::sync::Arc<Recorder<Verdict>>) -> kfn_sdk::Registry {
    let mut handlers = kfn_sdk::Registry::default();
    handlers.handler("validate_order", move |ctx: Ctx, order: OrderCreated| {
        let verdicts = verdicts.clone();
        async move {
            let mut products = Products::new();
            for item in &order.items {
                if let Some(p) = kfn_functions::catalog::product(&ctx, &item.product_id)? {
                    products.insert(item.product_id.clone(), p);
                }
            }
            let verdict = check(&order, &products).err().map(|r| (r.reason, r.message));
            verdicts.push((order.order_id.clone(), verdict));
            validate_order(ctx, order).await
        }
    });
    handlers
}

fn order(product: &str, quantity: i32, price: &str) -> OrderCreated {
    let unit_price: Decimal = price.parse().expect("price");
    OrderCreated {
        order_id: kfn_tests::unique("o"),
        customer_id: "c-1".into(),
        items: vec![OrderItem { product_id: product.into(), quantity, unit_price }],
        total_amount: unit_price * Decimal::from(quantity),
        shipping_address: "1 Main St".into(),
        created_at: now_ms(),
    }
}

/// Sends `order` and returns validation's verdict on it.
async fn verdict(
    app: &TestApp,
    verdicts: &Recorder<Verdict>,
    order: OrderCreated,
) -> Option<(RejectionReason, String)> {
    let id = order.order_id.clone();
    app.produce(&app.name("created-{s}"), &id, &order).await.expect("produce");
    let seen = verdicts.wait_until(&format!("the verdict on {id}"), |v| v.iter().any(|(o, _)| *o == id)).await;
    seen.expect("verdict").into_iter().find(|(o, _)| *o == id).map(|(_, v)| v).expect("found")
}

/// Sends orders made by `make` until one gets a verdict `wanted` accepts: a
/// change committed in PostgreSQL reaches the table a moment after the topic.
/// Returns how many orders it took.
async fn until_verdict(
    app: &TestApp,
    verdicts: &Recorder<Verdict>,
    make: impl Fn() -> OrderCreated,
    wanted: impl Fn(&Option<(RejectionReason, String)>) -> bool,
) -> usize {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for n in 1.. {
        let v = verdict(app, verdicts, make()).await;
        if wanted(&v) {
            return n;
        }
        assert!(tokio::time::Instant::now() < deadline, "no wanted verdict within {DEADLINE:?}; last {v:?}");
    }
    unreachable!()
}

#[tokio::test]
async fn validation_checks_orders_against_prices_stock_and_deletes_made_in_postgresql() {
    let stack = kfn_tests::connect::stack();
    let verdicts = Recorder::<Verdict>::new();
    let app = TestApp::start(VALIDATION, validation(verdicts.clone())).await.expect("app");
    // A product of this test's own: the other tests change the seeded ones.
    let sku = kfn_tests::unique("SKU-T");
    let db = &stack.postgres;
    db.psql(&format!(
        "INSERT INTO shop.products (product_id, name, price, stock) VALUES ('{sku}', 'Test kettle', 10.00, 5)"
    ))
    .await
    .expect("insert");
    let n = until_verdict(&app, &verdicts, || order(&sku, 2, "10.00"), Option::is_none).await;
    eprintln!("the inserted product validated an order after {n} order(s)");

    db.psql(&format!("UPDATE shop.products SET price = 12.50, stock = 3 WHERE product_id = '{sku}'"))
        .await
        .expect("update");
    until_verdict(&app, &verdicts, || order(&sku, 2, "12.50"), Option::is_none).await;
    // The table holds the new row now: the old price and more than the new stock are refused.
    let (reason, message) = verdict(&app, &verdicts, order(&sku, 2, "10.00")).await.expect("rejected");
    assert_eq!(reason, RejectionReason::PriceMismatch, "{message}");
    assert!(message.contains("catalog's 12.50"), "{message}");
    let (reason, message) = verdict(&app, &verdicts, order(&sku, 4, "12.50")).await.expect("rejected");
    assert_eq!(
        (reason, message),
        (RejectionReason::InsufficientStock, format!("4 units of {sku} ordered, 3 in stock"))
    );

    // A restarted replica restores the table before it validates: its first order sees the update.
    let app = app.restart(validation(verdicts.clone())).await.expect("restart");
    assert_eq!(verdict(&app, &verdicts, order(&sku, 3, "12.50")).await, None, "restored before the function started");

    db.psql(&format!("DELETE FROM shop.products WHERE product_id = '{sku}'")).await.expect("delete");
    let unknown = |v: &Option<(RejectionReason, String)>| matches!(v, Some((RejectionReason::UnknownProduct, _)));
    until_verdict(&app, &verdicts, || order(&sku, 1, "12.50"), unknown).await;
    // The rejections reached their topic as the order system writes them.
    let mut rejected = app.watch(&app.name("rejected-{s}")).await.expect("watch");
    rejected.wait_for_count(3).await.expect("three rejections or more");
    app.stop().await;
}

/// The order system from validation to the warehouse, tracking and the order
/// view, on topics of this test, and the three topics the connectors use.
const PIPELINE: &str = r#"
[topics."shop.products"]
partitions = 1
replication = 1
cleanup_policy = "compact"
format = "json"
schema = "schemas/product_change.avsc"

[topics."orders.view"]
partitions = 1
replication = 1
format = "json"
schema = "schemas/order_view.avsc"

[topics."inventory.reservations"]
partitions = 1
replication = 1
format = "json"
schema = "schemas/stock_reservation.avsc"

[topic_defaults]
partitions = 1
replication = 1
retention = "1d"

[topics]
"created-{s}" = { schema = "schemas/order_created.avsc" }
"validated-{s}" = { schema = "schemas/order_validated.avsc" }
"rejected-{s}" = { schema = "schemas/order_rejected.avsc" }
"processed-{s}" = { schema = "schemas/payment_processed.avsc" }
"failed-{s}" = { schema = "schemas/payment_failed.avsc" }
"reserved-{s}" = { schema = "schemas/inventory_reserved.avsc" }
"shipments-{s}" = { schema = "schemas/shipment_created.avsc" }
"dispatched-{s}" = { schema = "schemas/shipment_dispatched.avsc" }
"changes-{s}" = { schema = "schemas/order_status_changed.avsc" }
"status-{s}" = { cleanup_policy = "compact", schema = "schemas/order_status.avsc" }
"dlq-{s}" = {}

[functions.validation-{s}]
handler = "validate_order"
input = "created-{s}"
outputs = { validated = "validated-{s}", rejected = "rejected-{s}" }
tables = { catalog = "shop.products" }
dead_letter = "dlq-{s}"

[functions.payment-{s}]
handler = "process_payment"
input = "validated-{s}"
outputs = { processed = "processed-{s}", failed = "failed-{s}" }
dead_letter = "dlq-{s}"

[functions.inventory-{s}]
handler = "reserve_inventory"
input = "processed-{s}"
outputs = { reserved = "reserved-{s}", stock = "inventory.reservations", shipment = "shipments-{s}" }
guarantee = "exactly_once"
dead_letter = "dlq-{s}"

[functions.warehouse-{s}]
handler = "dispatch_shipment"
input = "shipments-{s}"
outputs = { dispatched = "dispatched-{s}" }
dead_letter = "dlq-{s}"

[functions.track-{s}]
handler = "track"
inputs = ["created-{s}", "validated-{s}", "rejected-{s}", "processed-{s}", "failed-{s}", "shipments-{s}", "dispatched-{s}"]
outputs = { changes = "changes-{s}" }
dead_letter = "dlq-{s}"

[functions.tracking-{s}]
aggregate = "order_status"
input = "changes-{s}"
outputs = { table = "status-{s}" }
guarantee = "exactly_once"
dead_letter = "dlq-{s}"

[functions.view-{s}]
handler = "order_view"
inputs = ["created-{s}", "status-{s}"]
outputs = { view = "orders.view" }
dead_letter = "dlq-{s}"
"#;

#[tokio::test]
async fn a_dispatched_order_is_in_postgresql_with_its_status_and_its_stock_is_taken_there() {
    let stack = kfn_tests::connect::stack();
    let db = &stack.postgres;
    let sku = kfn_tests::unique("SKU-D");
    db.psql(&format!(
        "INSERT INTO shop.products (product_id, name, price, stock) VALUES ('{sku}', 'Test grinder', 7.00, 10)"
    ))
    .await
    .expect("insert");
    let app = TestApp::start(PIPELINE, kfn_functions::registry()).await.expect("app");

    let order_id = first_dispatched(&app, db, || order(&sku, 3, "7.00")).await;
    // Both halves of the row: customer and total from the created order, the status from tracking.
    // They meet whichever arrives first, so the status half may be there a moment before the other.
    let query =
        format!("SELECT customer_id, total, status, updated_at > 0 FROM orders.orders WHERE order_id = '{order_id}'");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let row = loop {
        let row = db.psql(&query).await.expect("row");
        if row == "c-1|21.00|dispatched|t" || tokio::time::Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row, "c-1|21.00|dispatched|t");

    // The reservation went back to PostgreSQL, and took its units off the stock there.
    let query = format!("SELECT product_id, quantity FROM shop.reservations WHERE reservation_id = '{order_id}/0'");
    assert_eq!(await_row(db, &query, &format!("{sku}|3")).await, format!("{sku}|3"));
    let stock = db.psql(&format!("SELECT stock FROM shop.products WHERE product_id = '{sku}'")).await.expect("stock");
    assert_eq!(stock, "7", "10 in stock, 3 reserved once");
    // ... and Debezium carries the new stock back to the topic validation reads.
    let mut products = app.watch("shop.products").await.expect("watch");
    products
        .wait_until("the stock after the reservation", |records| {
            records.iter().any(|(_, r)| {
                r.key.as_deref() == Some(sku.as_bytes())
                    && r.value.as_ref().is_some_and(|v| v.windows(9).any(|w| w == b"\"stock\":7"))
            })
        })
        .await
        .expect("the new stock on shop.products");
    app.stop().await;
}

/// Sends orders made by `make` through [`PIPELINE`] until one is dispatched
/// (until a product just inserted reached validation's table, its orders are
/// rejected as unknown); returns its id.
async fn first_dispatched(
    app: &TestApp,
    db: &kfn::dev::postgres::LocalPostgres,
    make: impl Fn() -> OrderCreated,
) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let order = make();
        let id = order.order_id.clone();
        app.produce(&app.name("created-{s}"), &id, &order).await.expect("produce");
        let query = format!("SELECT status FROM orders.orders WHERE order_id = '{id}'");
        let status = await_row_where(db, &query, |s| s == "dispatched" || s == "rejected").await;
        if status == "dispatched" {
            return id;
        }
        assert!(tokio::time::Instant::now() < deadline, "no order dispatched within {DEADLINE:?}");
    }
}

#[tokio::test]
async fn after_1000_orders_postgresqls_order_table_equals_the_latest_state_on_the_topic() {
    const N: usize = 1000;
    let stack = kfn_tests::connect::stack();
    let db = &stack.postgres;
    let sku = kfn_tests::unique("SKU-K");
    db.psql(&format!(
        "INSERT INTO shop.products (product_id, name, price, stock) VALUES ('{sku}', 'Cups', 2.50, 1000000)"
    ))
    .await
    .expect("insert");
    let app = TestApp::start(PIPELINE, kfn_functions::registry()).await.expect("app");
    first_dispatched(&app, db, || order(&sku, 1, "2.50")).await;

    // Dispatched, declined by the gateway, and rejected by validation, by turns.
    let prefix = kfn_tests::unique("k");
    let orders: Vec<OrderCreated> = (0..N)
        .map(|i| {
            let mut o = order(if i % 20 == 7 { "SKU-404" } else { &sku }, 1 + (i % 3) as i32, "2.50");
            o.order_id = format!("{prefix}-{i:04}");
            o.customer_id = if i % 10 == 3 { format!("declined-{i}") } else { format!("c-{}", i % 37) };
            o
        })
        .collect();
    let topic = app.name("created-{s}");
    for chunk in orders.chunks(100) {
        let records = chunk
            .iter()
            .map(|o| {
                let value = app.encode(&topic, o).expect("encode");
                ProducerRecord::new(Some(Bytes::from(o.order_id.clone())), Some(value), now_ms())
            })
            .collect();
        app.produce_records(&topic, 0, records).await.expect("produce");
    }

    // Every order settles in PostgreSQL: a terminal status in its row.
    let settled = format!(
        "SELECT count(*) FROM orders.orders WHERE order_id LIKE '{prefix}-%' AND status IN ('dispatched', 'rejected', 'payment_failed')"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut last = String::new();
    while last != N.to_string() {
        assert!(tokio::time::Instant::now() < deadline, "{last} of {N} orders settled in PostgreSQL after 300 s");
        last = db.psql(&settled).await.expect("count");
        if last != N.to_string() {
            // PostgreSQL has no notification for rows Connect inserts; a short poll of a local query.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // The latest state on the topic: the tracking table's last row of each order.
    let mut table = app.watch(&app.name("status-{s}")).await.expect("watch");
    let schemas = app.app.schemas.clone();
    let records = table
        .wait_until("every order's terminal row", |records| {
            let keys: std::collections::BTreeSet<_> = records
                .iter()
                .filter_map(|(_, r)| r.key.as_deref())
                .filter(|k| k.starts_with(prefix.as_bytes()))
                .collect();
            keys.len() == N
        })
        .await
        .expect("status rows")
        .to_vec();
    let mut latest = std::collections::BTreeMap::new();
    for (_, record) in records {
        let Some(value) = record.value.as_deref() else { continue };
        let writer = schemas.resolve(value).await.expect("schema");
        let row: kfn_functions::events::OrderStatus =
            serde_avro_fast::from_datum_slice(writer.datum, &writer.schema).expect("an OrderStatus");
        if row.order_id.starts_with(&prefix) {
            latest.insert(row.order_id.clone(), row.status.as_str().to_string());
        }
    }
    let expected: Vec<String> = orders
        .iter()
        .map(|o| format!("{}|{}|{}|{}", o.order_id, o.customer_id, o.total_amount, latest[&o.order_id]))
        .collect();
    let rows = db
        .psql(&format!(
            "SELECT order_id, customer_id, total, status FROM orders.orders WHERE order_id LIKE '{prefix}-%' ORDER BY order_id"
        ))
        .await
        .expect("rows");
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), N);
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row, want);
    }
    let count = |status: &str| latest.values().filter(|s| *s == status).count();
    // i % 20 == 7 (unknown product) and i % 10 == 3 (declined card) never meet.
    assert_eq!(
        (count("rejected"), count("payment_failed"), count("dispatched")),
        (N / 20, N / 10, N - N / 20 - N / 10)
    );
    app.stop().await;
}

#[tokio::test]
async fn restarting_the_connect_worker_mid_stream_loses_nothing() {
    const N: i64 = 60;
    let stack = kfn_tests::connect::stack();
    let db = &stack.postgres;
    let sku = kfn_tests::unique("SKU-R");
    db.psql(&format!(
        "INSERT INTO shop.products (product_id, name, price, stock) VALUES ('{sku}', 'Restart kettle', 1.00, 0)"
    ))
    .await
    .expect("insert");
    // Rows for the sink, written as kfn writes a JSON topic.
    let text = std::fs::read_to_string(kfn_tests::workspace_root().join("schemas/order_view.avsc")).expect("schema");
    let schema = std::sync::Arc::new(text.parse::<serde_avro_fast::Schema>().expect("parse"));
    let encoder = kfn::avro::OutputEncoder::json("orders.view", schema).expect("a flat row schema");
    let producer = Producer::new(kfn_tests::cluster(), ProducerConfig::default()).await.expect("producer");
    let prefix = kfn_tests::unique("restart");
    let restarted = std::sync::Arc::new(tokio::sync::Notify::new());

    // One stock change and one order row at a time; the worker restarts a third of the way through.
    let writer = {
        let (sku, prefix, restarted) = (sku.clone(), prefix.clone(), restarted.clone());
        async move {
            for i in 1..=N {
                stack
                    .postgres
                    .psql(&format!("UPDATE shop.products SET stock = {i} WHERE product_id = '{sku}'"))
                    .await?;
                let row = kfn_functions::events::OrderView {
                    order_id: format!("{prefix}-{i}"),
                    customer_id: Some("c-1".into()),
                    total: Some(format!("{i}.00")),
                    status: Some("dispatched".into()),
                    updated_at: Some(i),
                };
                let mut value = Vec::new();
                encoder.encode(&row, &mut value)?;
                let record =
                    ProducerRecord::new(Some(Bytes::from(row.order_id.clone())), Some(Bytes::from(value)), now_ms());
                producer.send(&TopicPartition::new("orders.view", 0), vec![record]).await?;
                if i == N / 3 {
                    restarted.notify_one();
                }
            }
            anyhow::Ok(())
        }
    };
    let restart = async {
        restarted.notified().await;
        tokio::task::spawn_blocking(|| stack.restart_connect()).await.expect("join")
    };
    let (written, restart) = tokio::join!(writer, restart);
    written.expect("writes");
    restart.expect("Connect restarted");

    // Every order row reached PostgreSQL, once each.
    let query = format!("SELECT count(*), sum(updated_at) FROM orders.orders WHERE order_id LIKE '{prefix}-%'");
    let expected = format!("{N}|{}", N * (N + 1) / 2);
    assert_eq!(await_row(db, &query, &expected).await, expected);
    // Every stock change reached the topic (a change sent twice after the restart is allowed).
    let mut products = TopicWatcherOf::new(&sku).await;
    let seen = products.stocks_until(|stocks| (1..=N).all(|i| stocks.contains(&i))).await;
    assert!((1..=N).all(|i| seen.contains(&i)), "missing stock values: {seen:?}");
}

/// The stock values Debezium wrote for one product on shop.products.
struct TopicWatcherOf {
    sku: String,
    watcher: kfn_tests::app::TopicWatcher,
}

impl TopicWatcherOf {
    async fn new(sku: &str) -> Self {
        let watcher = kfn_tests::app::TopicWatcher::new(kfn_tests::cluster(), "shop.products").await.expect("watch");
        Self { sku: sku.to_string(), watcher }
    }

    async fn stocks_until(
        &mut self,
        done: impl Fn(&std::collections::BTreeSet<i64>) -> bool,
    ) -> std::collections::BTreeSet<i64> {
        let sku = self.sku.clone();
        let stocks = move |records: &[(i32, kfn::kafka::fetch::ConsumedRecord)]| {
            records
                .iter()
                .filter(|(_, r)| r.key.as_deref() == Some(sku.as_bytes()))
                .filter_map(|(_, r)| serde_json::from_slice::<ProductChange>(r.value.as_deref()?).ok())
                .filter_map(|c| c.after.map(|p| i64::from(p.stock)))
                .collect::<std::collections::BTreeSet<i64>>()
        };
        let records =
            self.watcher.wait_until("every stock value", |records| done(&stocks(records))).await.expect("stocks");
        stocks(records)
    }
}
