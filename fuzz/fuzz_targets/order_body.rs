//! POST /orders: any body through the Order API's handler, as the HTTP
//! trigger hands it over (the socket and the producer are the trigger's; the
//! request handling that turns a body into an order is all here).
//!
//! Properties: no panic; the status is one the API documents; an accepted
//! order obeys the limits `parse_order` promises (1 to 100 items, a total
//! below 10^8 equal to the sum of its lines) and frames with the shipped
//! `orders.created` schema, decoding back to the same event.

#![no_main]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use kfn::avro::{decode, framing, OutputEncoder};
use kfn_functions::events::OrderCreated;
use kfn_functions::{limits, order_api};
use kfn_sdk::HttpRequest;
use libfuzzer_sys::fuzz_target;

fn encoder() -> &'static OutputEncoder {
    static ENCODER: OnceLock<OutputEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let text = include_str!("../../schemas/order_created.avsc");
        let schema = serde_avro_fast::Schema::from_str(text).expect("the shipped schema parses");
        OutputEncoder::new("orders.created", 1, Arc::new(schema))
    })
}

fuzz_target!(|body: &[u8]| {
    // The pure check, on whatever JSON the body holds.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        match order_api::parse_order(&value) {
            Ok(order) => {
                assert!((1..=limits::MAX_ITEMS).contains(&order.items.len()), "{order:?}");
                let sum: rust_decimal::Decimal = order.items.iter().map(|i| i.line_total()).sum();
                assert_eq!(order.total_amount, sum);
                assert!(order.total_amount < limits::amount_bound(), "{order:?}");
            }
            Err(invalid) => assert!(!invalid.message.is_empty()),
        }
    }

    // The handler, as the trigger calls it.
    let headers = HashMap::from([("content-type".to_owned(), "application/json".to_owned())]);
    let request = HttpRequest {
        method: "POST".into(),
        path: "/orders".into(),
        params: HashMap::new(),
        headers,
        body: body.to_vec().into(),
    };
    let reply = futures::executor::block_on(order_api::create_order(request));
    assert!(matches!(reply.status, 202 | 400 | 422), "status {}: {}", reply.status, reply.body);
    let answer: serde_json::Value = serde_json::from_str(&reply.body).expect("the reply body is JSON");
    if reply.status != 202 {
        assert!(reply.emit.is_empty());
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
        return;
    }
    assert_eq!(reply.emit.events.len(), 1);
    let emitted = &reply.emit.events[0];
    let mut framed = Vec::new();
    encoder().encode(emitted.value.as_ref(), &mut framed).expect("an accepted order encodes with its schema");
    let (id, datum) = framing::split(&framed).expect("framed");
    let created: OrderCreated = decode(id, encoder().schema(), datum).expect("the encoded order decodes");
    assert_eq!(Some(created.order_id.as_str()), answer["order_id"].as_str());
    assert_eq!(
        created.items.len(),
        serde_json::from_slice::<serde_json::Value>(body).unwrap()["items"].as_array().unwrap().len()
    );
});
