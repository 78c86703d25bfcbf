//! Avro schemas as the registry stores them: the text a client registered,
//! parsed once, with an identity that decides "the same schema".
//!
//! Identity is the parsed schema serialized back to compact JSON by
//! apache-avro, not Avro's Parsing Canonical Form: the canonical form strips
//! defaults, docs, aliases and logical types (`long` and
//! `{"type":"long","logicalType":"timestamp-millis"}` share one), so a schema
//! that only adds a default to a field would get the old id and the new
//! default would never reach a reader. Confluent compares the full schema
//! too. Whitespace, key order and short versus full names do not change the
//! identity.
//!
//! ```
//! use kfn::registry::schema::AvroSchema;
//!
//! let a = AvroSchema::parse(r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#).unwrap();
//! let b = AvroSchema::parse(r#"{ "fields": [ {"type": "int", "name": "x"} ], "name": "A", "type": "record" }"#).unwrap();
//! assert_eq!(a.identity(), b.identity());
//! assert!(AvroSchema::parse(r#"{"type":"record"}"#).is_err());
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use apache_avro::Schema;
use serde_json::Value;

/// A parsed Avro schema with the text it was registered as.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    text: Arc<str>,
    identity: Arc<str>,
    parsed: Arc<Schema>,
}

impl AvroSchema {
    /// Parses `text` as an Avro schema; the error says why it is not one.
    ///
    /// apache-avro is not known to panic on bad input, but a request must
    /// never take a connection down with it, so a panic is caught and
    /// reported as an invalid schema.
    ///
    /// Avro's rule that a union holds at most one schema of each unnamed type
    /// applies beneath logical types (a `timestamp-millis` is a `long`), which
    /// apache-avro checks only once they are taken off: a union of both is
    /// refused here, as no reader could tell its branches apart.
    pub fn parse(text: &str) -> Result<AvroSchema, String> {
        let schema = Self::parse_as_written(text)?;
        if text.contains("logicalType") {
            Self::parse_as_written(&without_logical_types(text)?)
                .map_err(|e| format!("{e} (beneath its logical types)"))?;
        }
        Ok(schema)
    }

    fn parse_as_written(text: &str) -> Result<AvroSchema, String> {
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            let schema = Schema::parse_str(text).map_err(|e| e.to_string())?;
            let identity = serde_json::to_string(&schema).map_err(|e| e.to_string())?;
            Ok::<_, String>((schema, identity))
        }))
        .map_err(|_| "the Avro parser failed on this schema".to_string())??;
        Ok(AvroSchema { text: text.into(), identity: parsed.1.into(), parsed: Arc::new(parsed.0) })
    }

    /// The schema text as it was registered.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    /// The string two schemas share exactly when they are the same schema.
    pub fn identity(&self) -> &Arc<str> {
        &self.identity
    }

    /// The parsed schema.
    pub fn parsed(&self) -> &Schema {
        &self.parsed
    }
}

/// `text` (a schema's JSON) with `logicalType` taken off every type, leaving the underlying types.
pub(crate) fn without_logical_types(text: &str) -> Result<String, String> {
    let mut json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    strip_logical_types(&mut json);
    Ok(json.to_string())
}

/// Removes `logicalType` from every type in `schema`: types only, never a
/// field's default value (a JSON object that may hold any key).
fn strip_logical_types(schema: &mut Value) {
    match schema {
        // A union: each branch is a type.
        Value::Array(branches) => branches.iter_mut().for_each(strip_logical_types),
        Value::Object(map) => {
            map.remove("logicalType");
            for key in ["type", "items", "values"] {
                if let Some(inner) = map.get_mut(key) {
                    strip_logical_types(inner);
                }
            }
            if let Some(Value::Array(fields)) = map.get_mut("fields") {
                for field in fields.iter_mut().filter_map(Value::as_object_mut) {
                    // apache-avro reads a field's own `logicalType` (beside
                    // its `type`) as the type's; Java Avro ignores it.
                    field.remove("logicalType");
                    if let Some(inner) = field.get_mut("type") {
                        strip_logical_types(inner);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_ignores_layout_but_keeps_defaults_and_logical_types() {
        let plain = AvroSchema::parse(r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#).unwrap();
        let spaced = AvroSchema::parse(
            "{ \"type\" : \"record\",\n \"name\": \"r\", \"fields\": [{\"name\":\"a\",\"type\":\"long\"}] }",
        )
        .unwrap();
        let with_default =
            AvroSchema::parse(r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long","default":0}]}"#)
                .unwrap();
        let timestamp = AvroSchema::parse(
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
        )
        .unwrap();
        assert_eq!(plain.identity(), spaced.identity());
        assert_ne!(plain.identity(), with_default.identity());
        assert_ne!(plain.identity(), timestamp.identity());
        assert_eq!(
            spaced.text().as_ref(),
            "{ \"type\" : \"record\",\n \"name\": \"r\", \"fields\": [{\"name\":\"a\",\"type\":\"long\"}] }"
        );
    }

    #[test]
    fn invalid_schemas_are_refused_with_a_reason() {
        for bad in ["", "not json", "{}", r#"{"type":"nope"}"#, r#"{"type":"record","name":"r"}"#, "[1]"] {
            let error = AvroSchema::parse(bad).expect_err(bad);
            assert!(!error.is_empty(), "{bad}");
        }
    }

    /// Found by the `registry_body` fuzz target: apache-avro 0.21 panics
    /// (an `unwrap` in `Name::parse`) on a record name that is not an Avro
    /// name; the catch turns it into a refusal instead of a dropped connection.
    #[test]
    fn a_record_name_apache_avro_panics_on_is_refused() {
        for name in ["OrderCr\\u0624eated", "Order-Created"] {
            let text = format!(r#"{{"type":"record","name":"{name}","fields":[]}}"#);
            let error = AvroSchema::parse(&text).expect_err(&text);
            assert!(!error.is_empty(), "{text}");
        }
    }

    #[test]
    fn primitive_schemas_are_schemas() {
        let s = AvroSchema::parse(r#""string""#).unwrap();
        assert_eq!(s.identity().as_ref(), r#""string""#);
    }
}
