//! Proves that every event type and its `.avsc` file describe the same Avro
//! schema, and that both Avro implementations agree on the bytes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_avro_derive::serde_avro_fast;
use serde_avro_fast::schema::SchemaMut;
use serde_json::Value;

use super::*;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn item(product_id: &str, quantity: i32, unit_price: &str) -> OrderItem {
    OrderItem { product_id: product_id.into(), quantity, unit_price: dec(unit_price) }
}

/// Every record, enum and field of a schema's JSON has a non-empty "doc".
fn assert_documented(file: &str, node: &Value) {
    match node {
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str);
            if matches!(kind, Some("record" | "enum")) {
                let name = &map["name"];
                let doc = map.get("doc").and_then(Value::as_str).unwrap_or("");
                assert!(!doc.trim().is_empty(), "{file}: {name} has no doc");
            }
            if let Some(Value::Array(fields)) = map.get("fields") {
                for field in fields {
                    let doc = field.get("doc").and_then(Value::as_str).unwrap_or("");
                    assert!(!doc.trim().is_empty(), "{file}: field {} has no doc", field["name"]);
                    assert_documented(file, &field["type"]);
                }
            }
            if let Some(items) = map.get("items") {
                assert_documented(file, items);
            }
        }
        Value::Array(branches) => branches.iter().for_each(|b| assert_documented(file, b)),
        _ => {}
    }
}

/// Checks one (type, schema file) pair and returns the file's name.
fn check<E>(sample: E) -> &'static str
where
    E: Event + BuildSchema + PartialEq + std::fmt::Debug,
{
    let (_, file) = schema_files()
        .iter()
        .find(|(name, _)| *name == E::NAME)
        .unwrap_or_else(|| panic!("{} is not in schema_files()", E::NAME));
    let text = std::fs::read_to_string(schemas_dir().join(file)).unwrap();

    // Both implementations accept the file, and its full name is the type's.
    let fast: serde_avro_fast::Schema = text.parse().unwrap_or_else(|e| panic!("{file}: {e}"));
    let fast_mut: SchemaMut = text.parse().unwrap();
    let apache = apache_avro::Schema::parse_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let full_name = apache.name().map(|n| n.fullname(None));
    assert_eq!(full_name.as_deref(), Some(E::NAME), "{file}");
    assert_documented(file, &serde_json::from_str(&text).unwrap());

    // The type's own schema matches the file: field names, order, types and
    // logical types (serde_avro_fast's JSON keeps logical types, which the
    // Parsing Canonical Form drops) ...
    let derived = E::schema_mut();
    assert_eq!(
        serde_json::to_value(&derived).unwrap(),
        serde_json::to_value(&fast_mut).unwrap(),
        "{file} and the Rust type {} disagree",
        E::NAME
    );
    // ... and apache-avro's Parsing Canonical Form agrees.
    let derived_json = serde_json::to_string(&derived).unwrap();
    let derived_apache = apache_avro::Schema::parse_str(&derived_json).unwrap();
    assert_eq!(derived_apache.canonical_form(), apache.canonical_form(), "{file}");

    // The sample round-trips through serde_avro_fast with the file's schema.
    let bytes = serde_avro_fast::to_datum_vec(&sample, &mut serde_avro_fast::ser::SerializerConfig::new(&fast))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let back: E = serde_avro_fast::from_datum_slice(&bytes, &fast).unwrap();
    assert_eq!(back, sample, "{file}");

    // apache-avro reads those bytes as a valid datum and writes the same bytes.
    let value = apache_avro::from_avro_datum(&apache, &mut bytes.as_slice(), None).unwrap();
    assert!(value.validate(&apache), "{file}: {value:?}");
    assert_eq!(apache_avro::to_avro_datum(&apache, value).unwrap(), bytes, "{file}");
    file
}

#[test]
fn every_event_type_matches_its_schema_file() {
    let t = 1_700_000_000_123;
    let items = vec![item("SKU-001", 2, "19.99"), item("SKU-002", 1, "1250.00"), item("SKU-003", 3, "0.05")];
    let total = dec("1290.13");
    let checked: BTreeSet<&str> = [
        check(OrderCreated {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: items.clone(),
            total_amount: total,
            shipping_address: "1 Main St".into(),
            created_at: t,
        }),
        check(OrderValidated {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: items.clone(),
            total_amount: total,
            shipping_address: "1 Main St".into(),
            created_at: t,
            validated_at: t + 1,
        }),
        check(OrderRejected {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            reason: RejectionReason::UnknownProduct,
            message: "no such product".into(),
            product_id: Some("SKU-404".into()),
            total_amount: dec("-0.01"),
            rejected_at: t,
        }),
        check(PaymentProcessed {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            payment_id: "pay-1".into(),
            amount: dec("99999999.99"),
            items: items.clone(),
            shipping_address: "1 Main St".into(),
            processed_at: t,
        }),
        check(PaymentFailed {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            amount: dec("5000.01"),
            reason: PaymentFailureReason::AmountLimitExceeded,
            message: "too much".into(),
            failed_at: t,
        }),
        check(InventoryReserved {
            reservation_id: "o-1/0".into(),
            product_id: "SKU-001".into(),
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            quantity: 2,
            unit_price: dec("19.99"),
            reserved_at: t,
        }),
        check(ShipmentCreated {
            shipment_id: "shp-o-1".into(),
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: vec![ShipmentItem { product_id: "SKU-001".into(), quantity: 2 }],
            shipping_address: "1 Main St".into(),
            created_at: t,
        }),
        check(ShipmentDispatched {
            shipment_id: "shp-o-1".into(),
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            carrier: "DHL".into(),
            tracking_number: "1Z0".into(),
            dispatched_at: t,
        }),
        check(Notification {
            notification_id: "o-1/SMS".into(),
            customer_id: "c-1".into(),
            order_id: "o-1".into(),
            channel: NotificationChannel::Sms,
            kind: NotificationKind::ShipmentDispatched,
            message: "on its way".into(),
            created_at: t,
        }),
        check(OrderMetrics {
            window_start: t,
            window_end: t + 3_600_000,
            order_count: 3,
            total_revenue: dec("1234567890123.45"),
            avg_order_value: dec("411522630041.15"),
        }),
        check(ProductSales { product_id: "SKU-001".into(), total_quantity: 1 << 40, total_revenue: dec("0") }),
        check(OrderStatusChanged {
            order_id: "o-1".into(),
            status: OrderState::PaymentFailed,
            at: t,
            detail: "CARD_DECLINED".into(),
        }),
        check(OrderStatus {
            order_id: "o-1".into(),
            status: OrderState::Dispatched,
            history: vec![
                StatusChange { status: OrderState::Created, at: t, detail: "created".into() },
                StatusChange { status: OrderState::Dispatched, at: t + 9, detail: "DHL".into() },
            ],
        }),
        check(ProductChange {
            before: None,
            after: Some(Product {
                product_id: "SKU-001".into(),
                name: "Espresso beans 1 kg".into(),
                price: "19.99".into(),
                stock: 500,
                updated_at: "2026-12-05T00:12:18.844809Z".into(),
            }),
            op: "r".into(),
        }),
        check(OrderView {
            order_id: "o-1".into(),
            customer_id: None,
            total: Some("42.00".into()),
            status: Some("dispatched".into()),
            updated_at: Some(t),
        }),
        check(StockReservation {
            reservation_id: "o-1/0".into(),
            product_id: "SKU-001".into(),
            order_id: "o-1".into(),
            quantity: 2,
            reserved_at: t,
        }),
    ]
    .into_iter()
    .collect();
    let listed: BTreeSet<&str> = schema_files().iter().map(|(_, file)| *file).collect();
    assert_eq!(checked, listed, "every file in schema_files() must be checked");
}

#[test]
fn schema_files_lists_every_file_in_the_schemas_folder() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(schemas_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".avsc"))
        .collect();
    let listed: BTreeSet<String> = schema_files().iter().map(|(_, file)| file.to_string()).collect();
    assert_eq!(on_disk, listed);
}

fn round_trip<E: Event + PartialEq + std::fmt::Debug>(sample: E) {
    let text =
        std::fs::read_to_string(schemas_dir().join(schema_files().iter().find(|(n, _)| *n == E::NAME).unwrap().1))
            .unwrap();
    let schema: serde_avro_fast::Schema = text.parse().unwrap();
    let bytes =
        serde_avro_fast::to_datum_vec(&sample, &mut serde_avro_fast::ser::SerializerConfig::new(&schema)).unwrap();
    assert_eq!(serde_avro_fast::from_datum_slice::<E>(&bytes, &schema).unwrap(), sample);
}

#[test]
fn every_enum_symbol_round_trips() {
    for &reason in RejectionReason::ALL {
        round_trip(OrderRejected {
            order_id: "o".into(),
            customer_id: "c".into(),
            reason,
            message: reason.to_string(),
            product_id: None,
            total_amount: dec("1.00"),
            rejected_at: 0,
        });
    }
    for &reason in PaymentFailureReason::ALL {
        round_trip(PaymentFailed {
            order_id: "o".into(),
            customer_id: "c".into(),
            amount: dec("1.00"),
            reason,
            message: reason.to_string(),
            failed_at: 0,
        });
    }
    for &status in OrderState::ALL {
        round_trip(OrderStatusChanged { order_id: "o".into(), status, at: 0, detail: status.to_string() });
    }
    for &kind in NotificationKind::ALL {
        for &channel in NotificationChannel::ALL {
            round_trip(Notification {
                notification_id: "n".into(),
                customer_id: "c".into(),
                order_id: "o".into(),
                channel,
                kind,
                message: kind.to_string(),
                created_at: 0,
            });
        }
    }
}

#[test]
fn a_drifted_schema_is_detected() {
    // The comparison must see a logical type the canonical form drops.
    let text = std::fs::read_to_string(schemas_dir().join("order_created.avsc")).unwrap();
    let drifted = text.replacen(r#""logicalType": "timestamp-millis""#, r#""logicalType": "timestamp-micros""#, 1);
    assert_ne!(drifted, text);
    let drifted: SchemaMut = drifted.parse().unwrap();
    assert_ne!(serde_json::to_value(OrderCreated::schema_mut()).unwrap(), serde_json::to_value(&drifted).unwrap());
}

#[test]
fn line_total_multiplies_quantity_by_unit_price() {
    assert_eq!(item("p", 3, "19.99").line_total(), dec("59.97"));
}
