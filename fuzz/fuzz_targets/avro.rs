//! Confluent framing and Avro decoding, as a function reads its input.
//!
//! The first byte picks the mode:
//! - even: the rest is a framed record value; its schema id picks one of the
//!   shipped `schemas/*.avsc` as the writer's schema, and the datum is
//!   decoded into that event's Rust type (and into a JSON value). A decoded
//!   event must encode again and read back as the same bytes.
//! - odd: the rest is a writer schema (JSON text), a 0xFF byte, then a framed
//!   value: any writer schema the registry could hand out, read by the fixed
//!   reader `OrderCreated` (fields the writer lacks take defaults, extra ones
//!   are skipped) as `kfn::avro::decode` does for a handler.

#![no_main]

use std::str::FromStr;
use std::sync::OnceLock;

use kfn::avro::{decode, framing};
use kfn_functions::events::*;
use kfn_sdk::Event;
use libfuzzer_sys::fuzz_target;
use serde_avro_fast::Schema;

macro_rules! shipped {
    ($($file:literal => $event:ty,)*) => {
        const FILES: &[&str] = &[$(include_str!(concat!("../../schemas/", $file)),)*];

        /// Decodes `datum` into the event of shipped schema `index`.
        fn decode_shipped(index: usize, id: u32, schema: &Schema, datum: &[u8]) {
            let mut i = 0;
            $(
                if index == i {
                    return round_trip::<$event>(id, schema, datum);
                }
                i += 1;
            )*
            unreachable!("{i} shipped schemas, index {index}");
        }
    };
}

shipped! {
    "order_created.avsc" => OrderCreated,
    "order_validated.avsc" => OrderValidated,
    "order_rejected.avsc" => OrderRejected,
    "payment_processed.avsc" => PaymentProcessed,
    "payment_failed.avsc" => PaymentFailed,
    "inventory_reserved.avsc" => InventoryReserved,
    "shipment_created.avsc" => ShipmentCreated,
    "shipment_dispatched.avsc" => ShipmentDispatched,
    "notification.avsc" => Notification,
    "order_metrics.avsc" => OrderMetrics,
    "product_sales.avsc" => ProductSales,
    "order_status_changed.avsc" => OrderStatusChanged,
    "order_status.avsc" => OrderStatus,
    "product_change.avsc" => ProductChange,
    "order_view.avsc" => OrderView,
    "stock_reservation.avsc" => StockReservation,
}

fn schemas() -> &'static [Schema] {
    static SCHEMAS: OnceLock<Vec<Schema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| FILES.iter().map(|text| Schema::from_str(text).expect("a shipped schema parses")).collect())
}

/// Decodes; when that succeeds, the event encodes again and reads back to the same bytes.
fn round_trip<E: Event + std::fmt::Debug>(id: u32, schema: &Schema, datum: &[u8]) {
    let Ok(event) = decode::<E>(id, schema, datum) else {
        return;
    };
    let mut first = Vec::new();
    // An event read from a datum may still not encode (a decimal beyond the schema's precision).
    if kfn_sdk::ErasedEvent::encode(&event, schema, &mut first).is_err() {
        return;
    }
    let again: E = decode(id, schema, &first).expect("an encoded event decodes");
    let mut second = Vec::new();
    kfn_sdk::ErasedEvent::encode(&again, schema, &mut second).expect("a decoded event encodes again");
    assert_eq!(first, second, "{event:?} does not round-trip");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok((id, datum)) = framing::split(rest) else {
            return;
        };
        let index = id as usize % FILES.len();
        let schema = &schemas()[index];
        decode_shipped(index, id, schema, datum);
        let _ = decode::<serde_json::Value>(id, schema, datum);
        return;
    }
    let Some(split) = rest.iter().position(|&b| b == 0xFF) else {
        return;
    };
    let (schema_text, value) = (&rest[..split], &rest[split + 1..]);
    let Ok(schema_text) = std::str::from_utf8(schema_text) else {
        return;
    };
    let Ok(writer) = Schema::from_str(schema_text) else {
        return;
    };
    let Ok((id, datum)) = framing::split(value) else {
        return;
    };
    let _ = decode::<OrderCreated>(id, &writer, datum);
    let _ = decode::<serde_json::Value>(id, &writer, datum);
});
