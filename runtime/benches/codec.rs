//! Per-record Avro cost: decode + re-encode of one OrderCreated (3 items,
//! decimal(10,2), timestamp-millis), typed through serde_avro_fast versus
//! apache-avro's `Value` tree, plus kfn's whole per-record codec path
//! (framing, cached writer-schema lookup, typed decode, framed encode).
//!
//! A plain `harness = false` bench (criterion costs more to build than the
//! code it measures): `cargo bench -p kfn --bench codec` prints ns/op.
//! Under `cargo test --benches` it runs a few iterations as a smoke test.

use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use kfn::avro::{OutputEncoder, RegistryClient, SchemaCache};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

const ORDER_CREATED_AVSC: &str = include_str!("../../schemas/order_created.avsc");

/// Mirrors schemas/order_created.avsc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderCreated {
    order_id: String,
    customer_id: String,
    items: Vec<OrderItem>,
    total_amount: Decimal,
    shipping_address: String,
    created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderItem {
    product_id: String,
    quantity: i32,
    unit_price: Decimal,
}

impl kfn_sdk::Event for OrderCreated {
    const NAME: &'static str = "com.tutorial.orders.OrderCreated";
}

fn sample() -> OrderCreated {
    let item = |id: &str, quantity, price: &str| OrderItem {
        product_id: id.to_owned(),
        quantity,
        unit_price: Decimal::from_str(price).expect("a decimal literal"),
    };
    OrderCreated {
        order_id: "7d0c6f9e-2a51-4d8e-9a39-0f2b1c3d4e5f".to_owned(),
        customer_id: "cust-0042".to_owned(),
        items: vec![item("sku-1", 2, "19.99"), item("sku-2", 1, "5.00"), item("sku-3", 3, "0.25")],
        total_amount: Decimal::from_str("45.73").expect("a decimal literal"),
        shipping_address: "1 Main St, Springfield".to_owned(),
        created_at: 1_735_689_600_123,
    }
}

/// Runs `op` `iterations` times after a warm-up and returns ns per call.
fn measure(iterations: u32, mut op: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        op();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let iterations = if benching { 300_000 } else { 1_000 };

    let fast_schema = Arc::new(serde_avro_fast::Schema::from_str(ORDER_CREATED_AVSC).expect("the .avsc parses"));
    let apache_schema = apache_avro::Schema::parse_str(ORDER_CREATED_AVSC).expect("the .avsc parses");
    let mut config = serde_avro_fast::ser::SerializerConfig::new(&fast_schema);
    let datum = serde_avro_fast::to_datum(&sample(), Vec::new(), &mut config).expect("the sample encodes");

    // Both paths must write the same bytes, or the comparison means nothing.
    let value = apache_avro::from_avro_datum(&apache_schema, &mut &datum[..], None).expect("apache-avro decodes");
    let apache_bytes = apache_avro::to_avro_datum(&apache_schema, value).expect("apache-avro encodes");
    assert_eq!(apache_bytes, datum, "apache-avro and serde_avro_fast disagree on the bytes");

    let mut out = Vec::with_capacity(256);
    let typed = measure(iterations, || {
        let order: OrderCreated = serde_avro_fast::from_datum_slice(black_box(&datum), &fast_schema).expect("decodes");
        out.clear();
        let mut config = serde_avro_fast::ser::SerializerConfig::new(&fast_schema);
        out = serde_avro_fast::to_datum(&order, std::mem::take(&mut out), &mut config).expect("encodes");
        black_box(&out);
    });
    assert_eq!(out, datum);

    let value_tree = measure(iterations, || {
        let value = apache_avro::from_avro_datum(&apache_schema, &mut black_box(&datum[..]), None).expect("decodes");
        black_box(apache_avro::to_avro_datum(&apache_schema, value).expect("encodes"));
    });

    // kfn's per-record path: split the frame, find the cached writer schema,
    // decode into the event, frame the output into a reused buffer.
    let client = RegistryClient::new("http://127.0.0.1:1", None).expect("a valid URL");
    let cache = SchemaCache::new(client);
    cache.insert(12, Arc::clone(&fast_schema));
    let encoder = OutputEncoder::new("orders.created", 12, Arc::clone(&fast_schema));
    let mut framed = Vec::new();
    encoder.encode(&sample(), &mut framed).expect("encodes");
    let mut out = Vec::with_capacity(256);
    let kfn_path = measure(iterations, || {
        let writer = cache.try_resolve(black_box(&framed)).expect("framed").expect("cached");
        let order: OrderCreated = writer.decode().expect("decodes");
        encoder.encode(&order, &mut out).expect("encodes");
        black_box(&out);
    });
    assert_eq!(out, framed);

    println!("OrderCreated: {} items, {}-byte datum, {iterations} iterations", sample().items.len(), datum.len());
    println!("serde_avro_fast typed decode+encode   {typed:>8.0} ns/op");
    println!("kfn codec path (frame+cache+typed)    {kfn_path:>8.0} ns/op");
    println!("apache-avro Value decode+encode       {value_tree:>8.0} ns/op  ({:.1}x)", value_tree / typed);
    if !benching {
        println!("(not optimized: run `cargo bench -p kfn --bench codec` for real numbers)");
    }
}
