//! The codec end to end: frame with [`OutputEncoder`], resolve through
//! [`SchemaCache`], decode with the writer's schema. The cache against a
//! registry is tested with kfn's own registry server on a real broker
//! (`tests/it/registry_client.rs`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_avro_fast::Schema;

use super::{sample_order, OrderCreated, OrderItem, ORDER_CREATED_AVSC};
use crate::avro::{decode, framing, CodecError, OutputEncoder, RegistryClient, SchemaCache};

fn order_schema() -> Arc<Schema> {
    Arc::new(Schema::from_str(ORDER_CREATED_AVSC).unwrap())
}

fn encoder(id: u32) -> OutputEncoder {
    OutputEncoder::new("orders.created", id, order_schema())
}

/// A client of a registry nobody serves (nothing listens on port 9).
fn unreachable() -> RegistryClient {
    RegistryClient::new("http://127.0.0.1:9", None).unwrap()
}

#[test]
fn round_trip_through_the_frame() {
    let order = sample_order();
    let mut out = Vec::new();
    encoder(12).encode(&order, &mut out).unwrap();
    let (id, datum) = framing::split(&out).unwrap();
    assert_eq!(id, 12);
    let back: OrderCreated = decode(id, &order_schema(), datum).unwrap();
    assert_eq!(back, order);
}

#[test]
fn the_datum_is_avro_to_apache_avro_too() {
    // A second implementation, not ours, reads what the encoder wrote.
    let mut out = Vec::new();
    encoder(1).encode(&sample_order(), &mut out).unwrap();
    let schema = apache_avro::Schema::parse_str(ORDER_CREATED_AVSC).unwrap();
    let mut datum = &out[framing::HEADER_LEN..];
    let value = apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap();
    assert!(datum.is_empty(), "apache-avro read the whole datum");
    let apache_avro::types::Value::Record(fields) = value else { panic!("not a record: {value:?}") };
    assert_eq!(fields[0], ("order_id".to_owned(), apache_avro::types::Value::String(sample_order().order_id)));
    assert_eq!(fields[5].1, apache_avro::types::Value::TimestampMillis(1_735_689_600_123));
}

#[test]
fn the_output_buffer_is_reused() {
    let encoder = encoder(77);
    let mut out = Vec::with_capacity(4096);
    let mut big = sample_order();
    big.items = std::iter::repeat_n(big.items[0].clone(), 50).collect();
    encoder.encode(&big, &mut out).unwrap();
    let capacity = out.capacity();
    let small = sample_order();
    encoder.encode(&small, &mut out).unwrap();
    assert_eq!(out.capacity(), capacity, "encode must not reallocate a large enough buffer");
    // The previous contents are replaced, not appended to.
    let (id, datum) = framing::split(&out).unwrap();
    assert_eq!(id, 77);
    assert_eq!(decode::<OrderCreated>(id, encoder.schema(), datum).unwrap(), small);
}

#[test]
fn an_event_of_another_type_is_refused() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Ping {
        n: i32,
    }
    impl kfn_sdk::Event for Ping {
        const NAME: &'static str = "kfn.test.Ping";
    }
    let err = encoder(1).encode(&Ping { n: 1 }, &mut Vec::new()).unwrap_err();
    let CodecError::WrongEvent { topic, expected, actual } = &err else { panic!("{err}") };
    assert_eq!(
        (topic.as_str(), expected.as_str(), *actual),
        ("orders.created", "com.tutorial.orders.OrderCreated", "kfn.test.Ping")
    );
}

#[test]
fn an_event_that_does_not_fit_the_schema_is_an_encode_error() {
    // Right name, wrong shape: a stale type against a newer topic schema.
    #[derive(Debug, Serialize, Deserialize)]
    struct OrderCreatedV0 {
        order_id: String,
    }
    impl kfn_sdk::Event for OrderCreatedV0 {
        const NAME: &'static str = "com.tutorial.orders.OrderCreated";
    }
    let err = encoder(1).encode(&OrderCreatedV0 { order_id: "o".into() }, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, CodecError::Encode { .. }), "{err}");
    assert_eq!(err.kind(), "encode");
}

#[tokio::test]
async fn a_registry_that_is_down_is_a_transient_error() {
    let retry = ExponentialBuilder::new().with_min_delay(Duration::from_millis(5)).with_max_times(1);
    let mut value = Vec::new();
    encoder(12).encode(&sample_order(), &mut value).unwrap();
    let err = SchemaCache::new(unreachable().with_retry(retry)).resolve(&value).await.unwrap_err();
    assert!(matches!(err, CodecError::Registry { id: 12, .. }), "{err}");
    assert!(err.is_transient(), "retry the record, do not dead-letter it");
}

#[tokio::test]
async fn a_datum_that_does_not_match_is_a_decode_error() {
    // The schema is cached: no registry is needed (nor reachable).
    let cache = SchemaCache::new(unreachable());
    cache.insert(12, order_schema());
    let mut value = Vec::new();
    encoder(12).encode(&sample_order(), &mut value).unwrap();
    // Cut inside the items: the reader runs out of bytes.
    let truncated = &value[..40];
    let err = cache.resolve(truncated).await.unwrap().decode::<OrderCreated>().unwrap_err();
    assert!(matches!(err, CodecError::Decode { id: 12, .. }), "{err}");
    // Bytes of another record: a string length that points past the end.
    let mut other = Vec::new();
    framing::write_header(12, &mut other);
    other.extend_from_slice(&[0x7E, b'x']);
    let err = cache.resolve(&other).await.unwrap().decode::<OrderCreated>().unwrap_err();
    assert_eq!(err.kind(), "decode");
}

fn arb_order() -> impl Strategy<Value = OrderCreated> {
    // decimal(10,2): at most 8 digits before the point.
    let price = (-9_999_999_999i64..10_000_000_000).prop_map(|cents| rust_decimal::Decimal::new(cents, 2));
    let item = ("\\PC{0,12}", any::<i32>(), price.clone()).prop_map(|(product_id, quantity, unit_price)| OrderItem {
        product_id,
        quantity,
        unit_price,
    });
    (".{0,40}", ".{0,20}", proptest::collection::vec(item, 0..8), price, "\\PC{0,60}", any::<i64>()).prop_map(
        |(order_id, customer_id, items, total_amount, shipping_address, created_at)| OrderCreated {
            order_id,
            customer_id,
            items,
            total_amount,
            shipping_address,
            created_at,
        },
    )
}

proptest! {
    #[test]
    fn any_order_round_trips(order in arb_order(), id in any::<u32>()) {
        let mut out = Vec::new();
        OutputEncoder::new("orders.created", id, order_schema()).encode(&order, &mut out).unwrap();
        let (got_id, datum) = framing::split(&out).unwrap();
        prop_assert_eq!(got_id, id);
        prop_assert_eq!(decode::<OrderCreated>(id, &order_schema(), datum).unwrap(), order);
    }
}

#[test]
fn an_array_of_elements_that_take_no_bytes_cannot_claim_more_than_the_datum_holds() {
    // Found by the avro fuzz target: a block of 2^40 nulls is one varint long, and was decoded
    // until the process ran out of memory.
    let schema: serde_avro_fast::Schema = r#"{"type":"array","items":"null"}"#.parse().unwrap();
    let mut datum = Vec::new();
    let mut zigzag: u64 = (1u64 << 40) << 1;
    while zigzag >= 0x80 {
        datum.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    datum.extend([zigzag as u8, 0]);
    let err = crate::avro::decode::<serde_json::Value>(7, &schema, &datum).unwrap_err();
    assert!(err.to_string().contains('7'), "{err}");
    // An honest array of nulls still decodes.
    let three: serde_json::Value = crate::avro::decode(7, &schema, &[6, 0]).unwrap();
    assert_eq!(three, serde_json::json!([null, null, null]));
}
