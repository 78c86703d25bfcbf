//! The values of JSON topics (`format = "json"`), as Kafka Connect's
//! JsonConverter writes them: with its `{"schema": ..., "payload": ...}`
//! wrapper (`schemas.enable=true`) or without, e.g. Debezium's change events.
//!
//! kfn writes JSON topics too, for sinks like Debezium's JDBC sink that need
//! the schema: [`RowSchema`] turns a flat Avro record schema into Connect's
//! and wraps each row. A field whose value is null is left out of the
//! record's schema and payload, so a sink's upsert leaves that column as it
//! is: two functions (or two events) can each fill their own columns of a row.
//!
//! ```
//! use kfn::json::{payload, JsonValue};
//! let wrapped = br#"{"schema": {"type": "string"}, "payload": "SKU-001"}"#;
//! assert_eq!(payload(wrapped).unwrap(), JsonValue::Value(serde_json::json!("SKU-001")));
//! assert_eq!(payload(b"").unwrap(), JsonValue::Tombstone);
//! ```

use serde_json::{json, Map, Value};

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

/// A flat Avro record schema as Kafka Connect's struct schema, to write rows
/// as JsonConverter reads them with `schemas.enable=true`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSchema {
    name: String,
    /// (field, Connect type, optional)
    fields: Vec<(String, &'static str, bool)>,
}

impl RowSchema {
    /// The Connect schema of the Avro record schema `avro` (its JSON text).
    ///
    /// Err: the schema is not a record of primitive fields (string, int,
    /// long, boolean, float, double, enum, decimal as text), possibly nullable.
    pub fn from_avro(avro: &str) -> Result<Self, String> {
        let schema: Value = serde_json::from_str(avro).map_err(|e| format!("not JSON: {e}"))?;
        if schema.get("type").and_then(Value::as_str) != Some("record") {
            return Err("expected a record schema: a JSON topic kfn writes takes rows".into());
        }
        let name = schema.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut fields = Vec::new();
        for field in schema.get("fields").and_then(Value::as_array).into_iter().flatten() {
            let fname = field.get("name").and_then(Value::as_str).unwrap_or_default();
            let ty = field.get("type").cloned().unwrap_or(Value::Null);
            let (ty, optional) = match &ty {
                Value::Array(branches) if branches.len() == 2 && branches.iter().any(|b| b == "null") => {
                    (branches.iter().find(|b| *b != "null").cloned().unwrap_or(Value::Null), true)
                }
                _ => (ty, false),
            };
            let connect = connect_type(&ty)
                .ok_or_else(|| format!("field {fname}: {ty} is not a flat column (string, int, long, boolean, float, double, enum, or their nullable union)"))?;
            fields.push((fname.to_string(), connect, optional));
        }
        Ok(Self { name, fields })
    }

    /// `row` (an event as serde's JSON) wrapped as `{"schema", "payload"}`,
    /// its null fields left out of both.
    pub fn wrap(&self, row: Value) -> Result<Value, String> {
        let Value::Object(mut row) = row else { return Err(format!("expected a row (a JSON object), found {row}")) };
        let mut fields = Vec::new();
        let mut payload = Map::new();
        for (name, ty, optional) in &self.fields {
            match row.remove(name) {
                Some(Value::Null) | None if *optional => {}
                Some(Value::Null) | None => {
                    return Err(format!("field {name} is null, and the schema says it is not optional"))
                }
                Some(value) => {
                    fields.push(json!({"field": name, "type": ty, "optional": optional}));
                    payload.insert(name.clone(), value);
                }
            }
        }
        Ok(
            json!({"schema": {"type": "struct", "name": self.name, "optional": false, "fields": fields}, "payload": payload}),
        )
    }
}

fn connect_type(avro: &Value) -> Option<&'static str> {
    let (ty, logical) = match avro {
        Value::String(ty) => (ty.as_str(), None),
        Value::Object(o) => (o.get("type")?.as_str()?, o.get("logicalType").and_then(Value::as_str)),
        _ => return None,
    };
    Some(match (ty, logical) {
        // kfn's Decimal is serialized as text ("42.00").
        ("bytes" | "fixed", Some("decimal")) => "string",
        ("string" | "enum", _) => "string",
        ("int", _) => "int32",
        ("long", _) => "int64",
        ("boolean", _) => "boolean",
        ("float", _) => "float",
        ("double", _) => "double",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_flat_record_becomes_connects_struct_and_null_fields_are_left_out() {
        let avro = r#"{"type": "record", "name": "Row", "fields": [
            {"name": "id", "type": "string"}, {"name": "n", "type": ["null", "long"]},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
            {"name": "state", "type": ["null", {"type": "enum", "name": "S", "symbols": ["a"]}]}]}"#;
        let schema = RowSchema::from_avro(avro).unwrap();
        let wrapped = schema.wrap(json!({"id": "o-1", "n": null, "price": "4.20", "state": "a"})).unwrap();
        assert_eq!(wrapped["payload"], json!({"id": "o-1", "price": "4.20", "state": "a"}));
        let types: Vec<_> = wrapped["schema"]["fields"].as_array().unwrap().iter().map(|f| f["type"].clone()).collect();
        assert_eq!(types, [json!("string"), json!("string"), json!("string")]);
        // What the reading side makes of it: the payload.
        assert_eq!(payload(wrapped.to_string().as_bytes()).unwrap(), JsonValue::Value(wrapped["payload"].clone()));
        assert!(schema.wrap(json!({"n": 3})).unwrap_err().contains("id is null"));
    }

    #[test]
    fn nested_records_and_arrays_are_not_rows() {
        let avro =
            r#"{"type": "record", "name": "R", "fields": [{"name": "xs", "type": {"type": "array", "items": "int"}}]}"#;
        assert!(RowSchema::from_avro(avro).unwrap_err().contains("field xs"));
        assert!(RowSchema::from_avro(r#""string""#).is_err());
    }

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
