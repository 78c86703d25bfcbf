//! Tests of the Order API: statuses, field paths and the emitted event.

use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::testing::{dec, single};

fn request(content_type: Option<&str>, body: &str) -> HttpRequest {
    let mut headers = HashMap::new();
    if let Some(ct) = content_type {
        headers.insert("content-type".to_owned(), ct.to_owned());
    }
    HttpRequest {
        method: "POST".into(),
        path: "/orders".into(),
        headers,
        body: body.to_owned().into(),
        ..HttpRequest::default()
    }
}

fn good_body() -> Value {
    json!({
        "customer_id": " c-1 ",
        "items": [
            {"product_id": "SKU-001", "quantity": 2, "unit_price": 19.99},
            {"product_id": "SKU-008", "quantity": 3, "unit_price": "4.99"},
            {"product_id": "SKU-012", "quantity": 1, "unit_price": 5e1}
        ],
        "shipping_address": "1 Main St, Springfield"
    })
}

async fn post(body: &Value) -> HttpReply {
    create_order(request(Some("application/json"), &body.to_string())).await
}

fn reply_json(reply: &HttpReply) -> Value {
    serde_json::from_str(&reply.body).unwrap()
}

#[tokio::test]
async fn a_good_order_is_accepted_and_emitted_keyed_by_its_id() {
    let before = kfn_sdk::now_ms();
    let reply = post(&good_body()).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let order_id = reply_json(&reply)["order_id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&order_id).unwrap().get_version_num(), 4);

    let (key, created) = single::<OrderCreated>(&reply.emit, "created");
    assert_eq!(key, order_id);
    assert_eq!(created.order_id, order_id);
    assert_eq!(created.customer_id, "c-1");
    assert_eq!(created.shipping_address, "1 Main St, Springfield");
    let lines: Vec<_> = created.items.iter().map(|i| (i.product_id.as_str(), i.quantity, i.unit_price)).collect();
    assert_eq!(lines, [("SKU-001", 2, dec("19.99")), ("SKU-008", 3, dec("4.99")), ("SKU-012", 1, dec("50.00"))]);
    assert_eq!(created.total_amount, dec("104.95"));
    assert!(created.created_at >= before && created.created_at <= kfn_sdk::now_ms());

    let second = post(&good_body()).await;
    assert_ne!(reply_json(&second)["order_id"], order_id, "every order gets its own id");
}

#[tokio::test]
async fn content_type_method_and_syntax_are_checked_first() {
    let body = good_body().to_string();
    for ct in [None, Some("text/plain"), Some("application/jsonx"), Some("")] {
        let reply = create_order(request(ct, &body)).await;
        assert_eq!(reply.status, 415, "{ct:?}");
        assert!(reply.emit.is_empty());
    }
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        assert_eq!(create_order(request(Some(ct), &body)).await.status, 202, "{ct}");
    }
    for broken in ["", "{", "{\"customer_id\": }", "nul"] {
        let reply = create_order(request(Some("application/json"), broken)).await;
        assert_eq!(reply.status, 400, "{broken:?}");
        assert!(reply_json(&reply)["error"].as_str().unwrap().starts_with("malformed JSON"));
        assert!(reply.emit.is_empty());
    }
    let mut get = request(Some("application/json"), &body);
    get.method = "GET".into();
    assert_eq!(create_order(get).await.status, 405);
}

#[tokio::test]
async fn invalid_values_are_422_with_the_field_path() {
    let long_id = "x".repeat(limits::MAX_ID_CHARS + 1);
    let too_many: Vec<Value> =
        (0..=limits::MAX_ITEMS).map(|_| json!({"product_id": "SKU-008", "quantity": 1, "unit_price": 4.99})).collect();
    let cases: Vec<(&str, Value, Value)> = vec![
        ("customer_id", json!("customer_id"), Value::Null),
        ("customer_id", json!("customer_id"), json!("  ")),
        ("customer_id", json!("customer_id"), json!(long_id)),
        ("customer_id", json!("customer_id"), json!(42)),
        ("shipping_address", json!("shipping_address"), json!("")),
        ("items", json!("items"), json!([])),
        ("items", json!("items"), json!("SKU-001")),
        ("items", json!("items"), json!(too_many)),
        ("items[0]", json!("items"), json!([7])),
        ("items[2].quantity", json!(["items", 2, "quantity"]), json!(0)),
        ("items[2].quantity", json!(["items", 2, "quantity"]), json!(-1)),
        ("items[2].quantity", json!(["items", 2, "quantity"]), json!(1.5)),
        ("items[2].quantity", json!(["items", 2, "quantity"]), json!("2")),
        ("items[2].quantity", json!(["items", 2, "quantity"]), json!(limits::MAX_QUANTITY + 1)),
        ("items[2].quantity", json!(["items", 2, "quantity"]), Value::Null),
        ("items[2].quantity", json!(["items", 2, "quantity"]), json!(u64::MAX)),
        ("items[1].unit_price", json!(["items", 1, "unit_price"]), json!(-0.01)),
        ("items[1].unit_price", json!(["items", 1, "unit_price"]), json!(1.999)),
        ("items[1].unit_price", json!(["items", 1, "unit_price"]), json!("1.999")),
        ("items[1].unit_price", json!(["items", 1, "unit_price"]), json!("abc")),
        ("items[1].unit_price", json!(["items", 1, "unit_price"]), json!(true)),
        ("items[1].unit_price", json!(["items", 1, "unit_price"]), json!(100_000_000)),
        ("items[1].unit_price", json!(["items", 1, "unit_price"]), json!(1e300)),
        ("items[0].product_id", json!(["items", 0, "product_id"]), json!("")),
    ];
    for (field, at, value) in cases {
        let mut body = good_body();
        match at {
            Value::String(name) => body[name.as_str()] = value.clone(),
            Value::Array(path) => {
                let i = path[1].as_u64().unwrap() as usize;
                body["items"][i][path[2].as_str().unwrap()] = value.clone();
            }
            _ => unreachable!(),
        }
        let reply = post(&body).await;
        assert_eq!(reply.status, 422, "{field} = {value}: {}", reply.body);
        let answer = reply_json(&reply);
        assert_eq!(answer["field"], field, "{field} = {value}: {answer}");
        assert!(answer["error"].as_str().unwrap().starts_with(field), "{answer}");
        assert!(reply.emit.is_empty());
    }
}

#[tokio::test]
async fn a_total_beyond_decimal_10_2_is_422_on_items() {
    let body = json!({
        "customer_id": "c-1",
        "items": [
            {"product_id": "SKU-001", "quantity": 1, "unit_price": "99999999.99"},
            {"product_id": "SKU-002", "quantity": 1, "unit_price": "0.01"}
        ],
        "shipping_address": "1 Main St"
    });
    let reply = post(&body).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply_json(&reply)["field"], "items");

    let mut body = body;
    body["items"][1]["unit_price"] = json!(0);
    assert_eq!(post(&body).await.status, 202, "99999999.99 is the largest total");
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_422_without_a_field() {
    let reply = post(&json!([1, 2])).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply_json(&reply), json!({"error": "the body must be a JSON object"}));
}

#[test]
fn prices_parse_exactly() {
    let p = |v: Value| price(Some(&v), "p");
    assert_eq!(p(json!(19.99)).unwrap().to_string(), "19.99");
    assert_eq!(p(json!(0.1)).unwrap().to_string(), "0.10");
    assert_eq!(p(json!("19.9")).unwrap().to_string(), "19.90");
    assert_eq!(p(json!(" 7 ")).unwrap().to_string(), "7.00");
    assert_eq!(p(json!(1e2)).unwrap().to_string(), "100.00");
    assert_eq!(p(json!("-0")).unwrap().to_string(), "0.00");
    assert_eq!(p(json!("99999999.99")).unwrap(), dec("99999999.99"));
    assert!(p(json!(0.30000000000000004)).is_err());
    assert!(p(json!("1e2")).is_ok());
}
