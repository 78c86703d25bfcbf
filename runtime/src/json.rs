//! The values of JSON topics (`format = "json"`), as Kafka Connect's
//! JsonConverter writes them: with its `{"schema": ..., "payload": ...}`
//! wrapper (`schemas.enable=true`) or without, e.g. Debezium's change events.
//!
//! ```
//! use kfn::json::{payload, JsonValue};
//! let wrapped = br#"{"schema": {"type": "string"}, "payload": "SKU-001"}"#;
//! assert_eq!(payload(wrapped).unwrap(), JsonValue::Value(serde_json::json!("SKU-001")));
//! assert_eq!(payload(b"").unwrap(), JsonValue::Tombstone);
//! ```

use serde_json::Value;

/// What a JSON topic's record value holds.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    /// A value for the handler (unwrapped from Connect's schema envelope).
    Value(Value),
    /// No value: a tombstone (Debezium writes one after each delete so that
    /// compaction forgets the key; the delete event before it carries the change).
    Tombstone,
}

/// The record value `bytes` of a JSON topic, its Connect schema wrapper removed.
///
/// Err: the bytes are not JSON (the message is serde_json's, with line and column).
pub fn payload(bytes: &[u8]) -> Result<JsonValue, String> {
    if bytes.is_empty() {
        return Ok(JsonValue::Tombstone);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value {
        Value::Null => Ok(JsonValue::Tombstone),
        // JsonConverter with schemas.enable=true: exactly these two fields.
        Value::Object(mut object)
            if object.len() == 2 && object.contains_key("schema") && object.contains_key("payload") =>
        {
            match object.remove("payload") {
                Some(Value::Null) | None => Ok(JsonValue::Tombstone),
                Some(payload) => Ok(JsonValue::Value(payload)),
            }
        }
        value => Ok(JsonValue::Value(value)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_debezium_event_without_schemas_is_the_value_itself() {
        let event = json!({"before": null, "after": {"product_id": "SKU-001", "price": "21.50"}, "op": "u"});
        assert_eq!(payload(event.to_string().as_bytes()).unwrap(), JsonValue::Value(event));
    }

    #[test]
    fn connects_schema_wrapper_is_removed() {
        let value = json!({"schema": {"type": "struct", "fields": []}, "payload": {"order_id": "o-1"}});
        assert_eq!(payload(value.to_string().as_bytes()).unwrap(), JsonValue::Value(json!({"order_id": "o-1"})));
        // A record that merely has a `payload` field among others is not a wrapper.
        let value = json!({"schema": 1, "payload": 2, "other": 3});
        assert_eq!(payload(value.to_string().as_bytes()).unwrap(), JsonValue::Value(value));
    }

    #[test]
    fn null_values_are_tombstones_and_garbage_is_an_error() {
        assert_eq!(payload(b"").unwrap(), JsonValue::Tombstone);
        assert_eq!(payload(b"null").unwrap(), JsonValue::Tombstone);
        assert_eq!(payload(br#"{"schema": null, "payload": null}"#).unwrap(), JsonValue::Tombstone);
        let err = payload(b"\x00\x00\x00\x00\x01avro").unwrap_err();
        assert!(err.starts_with("not JSON: "), "{err}");
    }
}
