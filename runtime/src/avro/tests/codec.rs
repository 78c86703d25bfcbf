//! The codec end to end: frame with [`OutputEncoder`], resolve through
//! [`SchemaCache`], decode with the writer's schema.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_avro_fast::Schema;

use super::fake_registry::{error_json, schema_json, FakeRegistry};
use super::{sample_order, OrderCreated, OrderItem, ORDER_CREATED_AVSC};
use crate::avro::{
    decode, framing, register_topic_schema, ApiErrorKind, CodecError, FramingError, OutputEncoder, RegistryClient,
    SchemaCache,
};

fn order_schema() -> Arc<Schema> {
    Arc::new(Schema::from_str(ORDER_CREATED_AVSC).unwrap())
}

fn encoder(id: u32) -> OutputEncoder {
    OutputEncoder::new("orders.created", id, order_schema())
}

fn cache(server: &FakeRegistry) -> SchemaCache {
    let retry = ExponentialBuilder::new().with_min_delay(Duration::from_millis(10)).with_max_times(1);
    SchemaCache::new(RegistryClient::new(&server.url(), None).unwrap().with_retry(retry))
}

/// A registry that knows `ORDER_CREATED_AVSC` as id 12 and nothing else.
async fn order_registry() -> FakeRegistry {
    FakeRegistry::start(|_, seen| match seen.target.as_str() {
        "/schemas/ids/12" => (200, schema_json(ORDER_CREATED_AVSC)),
        _ => (404, error_json(40403, "Schema not found")),
    })
    .await
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
async fn second_resolve_of_an_id_makes_no_request() {
    let server = order_registry().await;
    let cache = cache(&server);
    let mut value = Vec::new();
    encoder(12).encode(&sample_order(), &mut value).unwrap();

    assert!(cache.try_resolve(&value).unwrap().is_none(), "nothing cached yet");
    let first = cache.resolve(&value).await.unwrap();
    assert_eq!(first.schema_id, 12);
    assert_eq!(first.decode::<OrderCreated>().unwrap(), sample_order());
    for _ in 0..100 {
        cache.resolve(&value).await.unwrap();
    }
    let cached = cache.try_resolve(&value).unwrap().expect("cached after the first resolve");
    assert!(Arc::ptr_eq(&first.schema, &cached.schema), "parsed once, shared");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn the_erased_handler_decodes_with_the_resolved_writer_schema() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut registry = kfn_sdk::Registry::default();
    registry.handler("take", move |_ctx, order: OrderCreated| {
        let tx = tx.clone();
        async move {
            tx.send(order).unwrap();
            Ok(kfn_sdk::Emit::none())
        }
    });
    let server = order_registry().await;
    let cache = cache(&server);
    let mut value = Vec::new();
    encoder(12).encode(&sample_order(), &mut value).unwrap();
    let writer = cache.resolve(&value).await.unwrap();
    let handler = registry.topic_handler("take").unwrap();
    (handler.call)(kfn_sdk::Ctx::default(), writer.datum, &writer.schema).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), sample_order());
}

#[tokio::test]
async fn an_unknown_schema_id_is_a_permanent_typed_error() {
    let server = order_registry().await;
    let mut value = Vec::new();
    framing::write_header(99, &mut value);
    value.extend_from_slice(b"\x02");
    let err = cache(&server).resolve(&value).await.unwrap_err();
    let CodecError::UnknownSchema { id: 99, source } = &err else { panic!("{err}") };
    assert_eq!(source.kind(), Some(ApiErrorKind::SchemaNotFound));
    assert!(!err.is_transient(), "dead-letter it");
    assert_eq!(err.kind(), "unknown_schema");
    assert!(err.to_string().contains("99"), "{err}");
}

#[tokio::test]
async fn a_registry_that_is_down_is_a_transient_error() {
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let retry = ExponentialBuilder::new().with_min_delay(Duration::from_millis(5)).with_max_times(1);
    let client = RegistryClient::new(&format!("http://{addr}"), None).unwrap().with_retry(retry);
    let mut value = Vec::new();
    encoder(12).encode(&sample_order(), &mut value).unwrap();
    let err = SchemaCache::new(client).resolve(&value).await.unwrap_err();
    assert!(matches!(err, CodecError::Registry { id: 12, .. }), "{err}");
    assert!(err.is_transient(), "retry the record, do not dead-letter it");
}

#[tokio::test]
async fn a_wrong_magic_byte_fails_without_a_request() {
    let server = order_registry().await;
    let err = cache(&server).resolve(b"\x01\x00\x00\x00\x0c\x02").await.unwrap_err();
    assert!(matches!(err, CodecError::Framing(FramingError::WrongMagicByte { byte: 1 })), "{err}");
    assert_eq!(err.kind(), "framing");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_datum_that_does_not_match_is_a_decode_error() {
    let server = order_registry().await;
    let cache = cache(&server);
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

#[tokio::test]
async fn non_avro_and_unparsable_schemas_are_typed_errors() {
    let server = FakeRegistry::start(|_, seen| match seen.target.as_str() {
        "/schemas/ids/1" => (200, r#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}"#.to_owned()),
        _ => (200, schema_json(r#"{"type":"record","name":"Broken","fields":[{"name":"x","type":"nope"}]}"#)),
    })
    .await;
    let cache = cache(&server);
    let err = cache.schema(1).await.unwrap_err();
    assert!(matches!(&err, CodecError::NotAvro { id: 1, schema_type } if schema_type == "PROTOBUF"), "{err}");
    let err = cache.schema(2).await.unwrap_err();
    assert!(matches!(&err, CodecError::InvalidSchema { what, .. } if what == "schema id 2"), "{err}");
}

#[tokio::test]
async fn schema_references_are_fetched_and_resolved() {
    const ITEM: &str =
        r#"{"type":"record","name":"Item","namespace":"kfn.test","fields":[{"name":"sku","type":"string"}]}"#;
    const CART: &str = r#"{"type":"record","name":"Cart","namespace":"kfn.test","fields":[{"name":"items","type":{"type":"array","items":"kfn.test.Item"}}]}"#;
    let server = FakeRegistry::start(|_, seen| match seen.target.as_str() {
        "/schemas/ids/30" => {
            let refs = serde_json::json!([{ "name": "kfn.test.Item", "subject": "item-value", "version": 3 }]);
            (200, serde_json::json!({ "schema": CART, "references": refs }).to_string())
        }
        "/subjects/item-value/versions/3" => {
            (200, serde_json::json!({ "subject": "item-value", "id": 29, "version": 3, "schema": ITEM }).to_string())
        }
        other => (404, error_json(40403, other)),
    })
    .await;
    #[derive(Debug, PartialEq, Deserialize)]
    struct Item {
        sku: String,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Cart {
        items: Vec<Item>,
    }
    let schema = cache(&server).schema(30).await.unwrap();
    let cart: Cart = decode(30, &schema, b"\x04\x02a\x02b\x00").unwrap();
    assert_eq!(cart, Cart { items: vec![Item { sku: "a".into() }, Item { sku: "b".into() }] });
}

#[tokio::test]
async fn register_topic_schema_uses_the_value_subject() {
    let server = FakeRegistry::start(|_, seen| {
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/subjects/orders.created-value/versions"));
        (200, r#"{"id":12}"#.to_owned())
    })
    .await;
    let client = RegistryClient::new(&server.url(), None).unwrap();
    let (id, schema) = register_topic_schema(&client, "orders.created", ORDER_CREATED_AVSC).await.unwrap();
    assert_eq!(id, 12);
    let mut out = Vec::new();
    OutputEncoder::new("orders.created", id, Arc::clone(&schema)).encode(&sample_order(), &mut out).unwrap();
    assert_eq!(decode::<OrderCreated>(id, &schema, &out[framing::HEADER_LEN..]).unwrap(), sample_order());
}

#[tokio::test]
async fn register_topic_schema_falls_back_to_lookup_when_not_allowed() {
    let server = FakeRegistry::start(|_, seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("POST", "/subjects/orders.created-value/versions") => (403, error_json(40301, "User is denied operation Write")),
        ("POST", "/subjects/orders.created-value") => {
            let found = serde_json::json!({ "subject": "orders.created-value", "id": 5, "version": 1, "schema": ORDER_CREATED_AVSC });
            (200, found.to_string())
        }
        _ => (404, error_json(40401, "Subject not found")),
    })
    .await;
    let client = RegistryClient::new(&server.url(), None).unwrap();
    let (id, _) = register_topic_schema(&client, "orders.created", ORDER_CREATED_AVSC).await.unwrap();
    assert_eq!(id, 5);
}

#[tokio::test]
async fn register_topic_schema_errors_name_the_topic() {
    let server = FakeRegistry::start(|_, _| (409, error_json(409, "Schema being registered is incompatible"))).await;
    let client = RegistryClient::new(&server.url(), None).unwrap();
    let err = register_topic_schema(&client, "orders.created", ORDER_CREATED_AVSC).await.unwrap_err();
    let CodecError::Register { topic, subject, source } = &err else { panic!("{err}") };
    assert_eq!((topic.as_str(), subject.as_str()), ("orders.created", "orders.created-value"));
    assert_eq!(source.kind(), Some(ApiErrorKind::Incompatible));
    assert!(err.to_string().contains("incompatible"), "{err}");

    // A broken schema file fails before the registry is asked.
    let requests = server.requests();
    let err = register_topic_schema(&client, "orders.created", "{\"type\":\"record\"").await.unwrap_err();
    assert!(matches!(err, CodecError::InvalidSchema { .. }), "{err}");
    assert_eq!(server.requests(), requests);
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
