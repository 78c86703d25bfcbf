//! `create_order`: the Order API, `POST /orders`.
//!
//! Takes a JSON body
//! `{"customer_id": "c-1", "items": [{"product_id": "SKU-001", "quantity": 2, "unit_price": 19.99}], "shipping_address": "1 Main St"}`
//! (`unit_price` as a JSON number or a decimal string), checks it, computes
//! the total, assigns a UUID v4 order id and answers `202 {"order_id": ...}`
//! with an `OrderCreated` for output `created`, keyed by order_id; the runtime
//! answers only once the broker has it.
//!
//! Errors: 405 for another method, 415 unless the content type is
//! `application/json`, 400 for malformed JSON, 422
//! `{"error": ..., "field": "items[2].quantity"}` for a value that breaks a
//! rule of [`crate::limits`]. Whether products exist and are in stock is
//! validation's job, downstream. Bodies over the size limit (413) and the
//! `Idempotency-Key` header (answering a retried request with the first
//! order id instead of creating a second order) are the runtime's job.

use kfn_sdk::{Emit, HttpReply, HttpRequest};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::events::{OrderCreated, OrderItem};
use crate::limits;

/// A value of the request that breaks a rule: answered with 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    /// Path of the value, like `items[2].quantity`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidField {
    InvalidField { field: field.into(), message: message.into() }
}

/// An order request that passed every check, not yet given an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    /// The customer placing the order, trimmed.
    pub customer_id: String,
    /// The ordered lines.
    pub items: Vec<OrderItem>,
    /// Sum of the line totals, scale 2.
    pub total_amount: Decimal,
    /// Where to ship, trimmed.
    pub shipping_address: String,
}

fn text(body: &Map<String, Value>, name: &str, path: &str, max_chars: usize) -> Result<String, InvalidField> {
    match body.get(name) {
        None | Some(Value::Null) => Err(invalid(path, "is required")),
        Some(Value::String(s)) => {
            limits::check_text(s, max_chars).map_err(|message| invalid(path, message))?;
            Ok(s.trim().to_owned())
        }
        Some(_) => Err(invalid(path, "must be a string")),
    }
}

fn quantity(value: Option<&Value>, path: &str) -> Result<i32, InvalidField> {
    let value = value.ok_or_else(|| invalid(path, "is required"))?;
    // An integer beyond i64 is still an integer, just too large.
    let n = value
        .as_i64()
        .or_else(|| value.as_u64().map(|_| i64::MAX))
        .ok_or_else(|| invalid(path, "must be an integer"))?;
    if n < 1 {
        return Err(invalid(path, "must be at least 1"));
    }
    i32::try_from(n)
        .ok()
        .filter(|&q| q <= limits::MAX_QUANTITY)
        .ok_or_else(|| invalid(path, format!("must be at most {}", limits::MAX_QUANTITY)))
}

fn price(value: Option<&Value>, path: &str) -> Result<Decimal, InvalidField> {
    let value = value.ok_or_else(|| invalid(path, "is required"))?;
    let text = match value {
        // serde_json prints a float as the shortest text that reads back the
        // same, so 19.99 arrives as "19.99", not as its binary approximation.
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err(invalid(path, "must be a number or a decimal string")),
    };
    let mut price = text
        .parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| invalid(path, format!("{text} is not a decimal number")))?;
    if price.is_zero() {
        // "-0" is 0; keep the sign out of the event.
        price = Decimal::ZERO;
    } else if price.is_sign_negative() {
        return Err(invalid(path, "must not be negative"));
    }
    if price.normalize().scale() > limits::PRICE_SCALE {
        return Err(invalid(path, "must have at most 2 decimal places"));
    }
    if price >= limits::amount_bound() {
        return Err(invalid(path, "must be below 100000000"));
    }
    price.rescale(limits::PRICE_SCALE);
    Ok(price)
}

/// Checks a request body (already parsed as JSON) and computes its total.
pub fn parse_order(body: &Value) -> Result<OrderRequest, InvalidField> {
    let body = body.as_object().ok_or_else(|| invalid("", "the body must be a JSON object"))?;
    let customer_id = text(body, "customer_id", "customer_id", limits::MAX_ID_CHARS)?;
    let raw_items = match body.get("items") {
        None | Some(Value::Null) => return Err(invalid("items", "is required")),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("items", "must be an array")),
    };
    if raw_items.is_empty() {
        return Err(invalid("items", "must have at least 1 item"));
    }
    if raw_items.len() > limits::MAX_ITEMS {
        return Err(invalid("items", format!("must have at most {} items", limits::MAX_ITEMS)));
    }
    let mut items = Vec::with_capacity(raw_items.len());
    for (i, raw) in raw_items.iter().enumerate() {
        let path = |name: &str| format!("items[{i}].{name}");
        let raw = raw.as_object().ok_or_else(|| invalid(format!("items[{i}]"), "must be an object"))?;
        items.push(OrderItem {
            product_id: text(raw, "product_id", &path("product_id"), limits::MAX_ID_CHARS)?,
            quantity: quantity(raw.get("quantity"), &path("quantity"))?,
            unit_price: price(raw.get("unit_price"), &path("unit_price"))?,
        });
    }
    let shipping_address = text(body, "shipping_address", "shipping_address", limits::MAX_ADDRESS_CHARS)?;
    // At most 100 lines of 10^4 units below 10^8 each: far inside Decimal's range.
    let total_amount: Decimal = items.iter().map(OrderItem::line_total).sum();
    if total_amount >= limits::amount_bound() {
        return Err(invalid("items", format!("the order's total {total_amount} must be below 100000000")));
    }
    Ok(OrderRequest { customer_id, items, total_amount, shipping_address })
}

fn is_json(content_type: Option<&str>) -> bool {
    let media_type = content_type.and_then(|ct| ct.split(';').next()).map(str::trim);
    media_type.is_some_and(|mt| mt.eq_ignore_ascii_case("application/json"))
}

/// The `create_order` HTTP handler.
pub async fn create_order(req: HttpRequest) -> HttpReply {
    if req.method != "POST" {
        return HttpReply::error(405, None, "only POST is allowed");
    }
    if !is_json(req.header("content-type")) {
        return HttpReply::error(415, None, "the content type must be application/json");
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(body) => body,
        Err(e) => return HttpReply::error(400, None, &format!("malformed JSON: {e}")),
    };
    let order = match parse_order(&body) {
        Ok(order) => order,
        Err(e) if e.field.is_empty() => return HttpReply::error(422, None, &e.message),
        Err(e) => return HttpReply::error(422, Some(&e.field), &format!("{} {}", e.field, e.message)),
    };
    let order_id = uuid::Uuid::new_v4().to_string();
    tracing::debug!(order_id = %order_id, customer_id = %order.customer_id, "order accepted");
    let created = OrderCreated {
        order_id: order_id.clone(),
        customer_id: order.customer_id,
        items: order.items,
        total_amount: order.total_amount,
        shipping_address: order.shipping_address,
        created_at: kfn_sdk::now_ms(),
    };
    let body = serde_json::json!({ "order_id": order_id }).to_string();
    HttpReply { status: 202, body, emit: Emit::one("created", order_id, created) }
}

#[cfg(test)]
mod tests;
