//! The order system's tracking and analytics functions against the real
//! broker, with the real handlers of kfn-functions on unique topic names:
//! GET /orders/{id} shows an order's history in event-time order while
//! POST /orders stays the order API, and the analytics tables sum exactly
//! the test's own orders.

use std::collections::BTreeMap;

use kfn_functions::events::{
    OrderCreated, OrderItem, OrderValidated, PaymentProcessed, ShipmentCreated, ShipmentDispatched, ShipmentItem,
};
use kfn_tests::app::{now_ms, TestApp};
use rust_decimal::Decimal;
use serde_json::Value;

use super::aggregate::{http_get, http_until};

/// A topic of `schema` with `partitions` partitions, named `name`.
fn topic(name: &str, partitions: u32, schema: &str, compact: bool) -> String {
    let policy = if compact { "cleanup_policy = \"compact\"\n" } else { "" };
    format!(
        "[topics.\"{name}\"]\npartitions = {partitions}\nreplication = 1\n{policy}schema = \"schemas/{schema}\"\n\n"
    )
}

const DLQ: &str = "[topics.\"dlq-{s}\"]\npartitions = 1\nreplication = 1\n\n";

/// A POST of a JSON body over a fresh connection: (status, body).
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn dec(s: &str) -> Decimal {
    s.parse().expect("a decimal")
}

fn items(lines: &[(&str, i32, &str)]) -> Vec<OrderItem> {
    lines
        .iter()
        .map(|(p, q, price)| OrderItem { product_id: p.to_string(), quantity: *q, unit_price: dec(price) })
        .collect()
}

/// The statuses of a row of orders.status, in history order.
fn statuses(row: &Value) -> Vec<String> {
    row["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|c| c["status"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_history_is_served_in_event_time_order_beside_the_order_api() {
    let mut toml = String::from(DLQ);
    for (name, schema, partitions) in [
        ("created-{s}", "order_created.avsc", 2),
        ("validated-{s}", "order_validated.avsc", 3),
        ("paid-{s}", "payment_processed.avsc", 1),
        ("shipments-{s}", "shipment_created.avsc", 2),
        ("dispatched-{s}", "shipment_dispatched.avsc", 3),
        ("changes-{s}", "order_status_changed.avsc", 3),
    ] {
        toml += &topic(name, partitions, schema, false);
    }
    toml += &topic("status-{s}", 3, "order_status.avsc", true);
    toml += "[functions.api-{s}]\nhandler = \"create_order\"\ntrigger = { http = { method = \"POST\", path = \"/orders\" } }\noutputs = { created = \"created-{s}\" }\n\n";
    // One function reads the five order topics; each record runs the `track`
    // handler of its topic's event type. Its dead letters go to the
    // conventional track-{s}.dlq, created with the other topics.
    toml += "[functions.track-{s}]\nhandler = \"track\"\n\
             inputs = [\"created-{s}\", \"validated-{s}\", \"paid-{s}\", \"shipments-{s}\", \"dispatched-{s}\"]\n\
             outputs = { changes = \"changes-{s}\" }\n\n";
    toml += "[functions.tracking-{s}]\naggregate = \"order_status\"\ninput = \"changes-{s}\"\noutputs = { table = \"status-{s}\" }\n\
             query = { http = { path = \"/orders\" } }\nguarantee = \"exactly_once\"\ndead_letter = \"dlq-{s}\"\n";
    let app = TestApp::start(&toml, kfn_functions::registry()).await.expect("app starts");
    let addr = app.http_addr().expect("the trigger serves the order API and the query");

    // Order o-1 is written topic by topic, its last step first: the changes
    // reach the fold out of event-time order.
    let id = format!("o-1-{}", app.suffix);
    let t = now_ms();
    let lines = items(&[("SKU-001", 2, "19.99")]);
    let dispatched = ShipmentDispatched {
        shipment_id: format!("shp-{id}"),
        order_id: id.clone(),
        customer_id: "c-1".into(),
        carrier: "DHL".into(),
        tracking_number: "DH1".into(),
        dispatched_at: t + 4_000,
    };
    app.produce(&app.name("dispatched-{s}"), &id, &dispatched).await.expect("produce");
    let path = format!("/orders/{id}");
    let (_, body) = http_until(addr, &path, |status, _| status == 200).await;
    let row: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(statuses(&row), ["dispatched"]);

    let shipment = ShipmentCreated {
        shipment_id: format!("shp-{id}"),
        order_id: id.clone(),
        customer_id: "c-1".into(),
        items: vec![ShipmentItem { product_id: "SKU-001".into(), quantity: 2 }],
        shipping_address: "1 Main St".into(),
        created_at: t + 3_000,
    };
    app.produce(&app.name("shipments-{s}"), &id, &shipment).await.expect("produce");
    let paid = PaymentProcessed {
        order_id: id.clone(),
        customer_id: "c-1".into(),
        payment_id: "pay-1".into(),
        amount: dec("39.98"),
        items: lines.clone(),
        shipping_address: "1 Main St".into(),
        processed_at: t + 2_000,
    };
    app.produce(&app.name("paid-{s}"), &id, &paid).await.expect("produce");
    let validated = OrderValidated {
        order_id: id.clone(),
        customer_id: "c-1".into(),
        items: lines.clone(),
        total_amount: dec("39.98"),
        shipping_address: "1 Main St".into(),
        created_at: t,
        validated_at: t + 1_000,
    };
    app.produce(&app.name("validated-{s}"), &id, &validated).await.expect("produce");
    let created = OrderCreated {
        order_id: id.clone(),
        customer_id: "c-1".into(),
        items: lines,
        total_amount: dec("39.98"),
        shipping_address: "1 Main St".into(),
        created_at: t,
    };
    app.produce(&app.name("created-{s}"), &id, &created).await.expect("produce");

    let (_, body) = http_until(addr, &path, |_, body| {
        serde_json::from_str::<Value>(body).is_ok_and(|row| statuses(&row).len() == 5)
    })
    .await;
    let row: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(row["order_id"], id.as_str());
    assert_eq!(row["status"], "dispatched");
    assert_eq!(statuses(&row), ["created", "validated", "payment_processed", "shipment_created", "dispatched"]);
    let times: Vec<i64> = row["history"].as_array().expect("history").iter().filter_map(|c| c["at"].as_i64()).collect();
    assert_eq!(times, [t, t + 1_000, t + 2_000, t + 3_000, t + 4_000]);
    assert!(row["history"][4]["detail"].as_str().is_some_and(|d| d.contains("DH1")), "{row}");

    // POST /orders is still the order API on the same path; its order shows up in GET.
    let order = r#"{"customer_id": "c-2", "items": [{"product_id": "SKU-002", "quantity": 1, "unit_price": "129.00"}], "shipping_address": "2 Side St"}"#;
    let (status, body) = http_post(addr, "/orders", order).await;
    assert_eq!(status, 202, "{body}");
    let posted: Value = serde_json::from_str(&body).expect("JSON");
    let posted_id = posted["order_id"].as_str().expect("an order id").to_string();
    let (_, body) = http_until(addr, &format!("/orders/{posted_id}"), |status, _| status == 200).await;
    let row: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((row["status"].as_str(), statuses(&row)), (Some("created"), vec!["created".to_string()]));

    let (status, _) = http_get(addr, "/orders/no-such-order").await;
    assert_eq!(status, 404);
    let (status, body) = http_get(addr, "/orders").await;
    let rows: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    assert_eq!((status, rows.len()), (200, 2), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_tables_sum_exactly_the_orders_written() {
    let mut toml = String::from(DLQ);
    toml += &topic("orders-{s}", 2, "order_created.avsc", false);
    toml += &topic("metrics-{s}", 3, "order_metrics.avsc", true);
    toml += &topic("top-{s}", 3, "product_sales.avsc", true);
    // Both aggregates read the orders directly: kfn regroups them by their key functions.
    toml += "[functions.metrics-{s}]\naggregate = \"order_metrics\"\ninput = \"orders-{s}\"\noutputs = { table = \"metrics-{s}\" }\n\
             window = \"1h\"\ngrace = \"5m\"\nquery = { http = { path = \"/analytics/orders\" } }\nguarantee = \"exactly_once\"\ndead_letter = \"dlq-{s}\"\n\n";
    toml += "[functions.top-{s}]\naggregate = \"product_sales\"\ninput = \"orders-{s}\"\noutputs = { table = \"top-{s}\" }\n\
             query = { http = { path = \"/analytics/top-products\" } }\nguarantee = \"exactly_once\"\ndead_letter = \"dlq-{s}\"\n";
    let app = TestApp::start(&toml, kfn_functions::registry()).await.expect("app starts");
    let addr = app.http_addr().expect("the trigger serves the queries");

    let products = [("SKU-001", "19.99"), ("SKU-002", "129.00"), ("SKU-003", "0.05"), ("SKU-004", "7.50")];
    let mut expected: BTreeMap<String, (i64, Decimal)> = BTreeMap::new();
    let mut revenue = Decimal::ZERO;
    let orders = 24;
    for n in 0..orders {
        // 1 to 3 lines per order, a product possibly twice in one order.
        let lines: Vec<(&str, i32, &str)> = (0..=(n % 3))
            .map(|i| {
                let (product, price) = products[(n * 7 + i * 3) % products.len()];
                (product, (n + i) as i32 % 4 + 1, price)
            })
            .collect();
        let items = items(&lines);
        for item in &items {
            let e = expected.entry(item.product_id.clone()).or_insert((0, Decimal::ZERO));
            e.0 += i64::from(item.quantity);
            e.1 += item.line_total();
        }
        let total: Decimal = items.iter().map(OrderItem::line_total).sum();
        revenue += total;
        let id = format!("o-{n}");
        let order = OrderCreated {
            order_id: id.clone(),
            customer_id: "c-1".into(),
            items,
            total_amount: total,
            shipping_address: "1 Main St".into(),
            created_at: now_ms(),
        };
        app.produce(&app.name("orders-{s}"), &id, &order).await.expect("produce");
    }

    let table = |body: &str| -> Option<BTreeMap<String, (i64, Decimal)>> {
        let rows: Vec<Value> = serde_json::from_str(body).ok()?;
        rows.iter()
            .map(|r| {
                let revenue = r["total_revenue"].as_str()?.parse().ok()?;
                Some((r["product_id"].as_str()?.to_string(), (r["total_quantity"].as_i64()?, revenue)))
            })
            .collect()
    };
    let (_, body) =
        http_until(addr, "/analytics/top-products", |_, body| table(body).as_ref() == Some(&expected)).await;
    assert_eq!(table(&body).expect("rows").len(), products.len());
    let (status, body) = http_get(addr, "/analytics/top-products/SKU-002").await;
    assert_eq!(status, 200);
    let row: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(row["total_quantity"].as_i64(), Some(expected["SKU-002"].0));
    // The same figures are exported as Prometheus gauges.
    let sample =
        format!("kfn_table_value{{table=\"{}\",key=\"SKU-002\",field=\"total_quantity\"}}", app.name("top-{s}"));
    assert_eq!(app.metric(&sample), expected["SKU-002"].0 as f64, "{}", app.app.metrics.render());

    // The orders fall in one hour window, or two if the test straddles an hour.
    let metrics = |body: &str| -> Option<(i64, Decimal)> {
        let rows: Vec<Value> = serde_json::from_str(body).ok()?;
        rows.iter().try_fold((0, Decimal::ZERO), |(count, sum), r| {
            let window = r["window_end"].as_i64()? - r["window_start"].as_i64()?;
            (window == 3_600_000).then_some(())?;
            Some((count + r["order_count"].as_i64()?, sum + r["total_revenue"].as_str()?.parse::<Decimal>().ok()?))
        })
    };
    let (_, body) =
        http_until(addr, "/analytics/orders", |_, body| metrics(body) == Some((orders as i64, revenue))).await;
    let rows: Vec<Value> = serde_json::from_str(&body).expect("JSON");
    assert!((1..=2).contains(&rows.len()), "{body}");
    for row in &rows {
        let count = row["order_count"].as_i64().expect("count");
        let total: Decimal = row["total_revenue"].as_str().expect("revenue").parse().expect("decimal");
        let average: Decimal = row["avg_order_value"].as_str().expect("average").parse().expect("decimal");
        assert_eq!(average, kfn_functions::analytics::average(total, count), "{row}");
    }
    app.stop().await;
}
