//! Avro schema resolution as kfn checks it: can data written with one schema
//! be read with another?
//!
//! The rules are apache-avro's `SchemaCompatibility::can_read` (field
//! defaults, promotions such as int to long, enum symbols, union branches,
//! record names), applied to the schemas with their logical types taken off.
//! apache-avro 0.21 answers "inconclusive" for every `decimal`, so on its own
//! it refuses any change to a record holding money (OrderCreated v1 to v2).
//! Apache Avro's Java `SchemaCompatibility`, which Confluent's registry runs,
//! resolves the underlying types as well and does not enforce the decimal
//! precision and scale rules (AVRO-2078). It is also what kfn's reader
//! needs: `serde_avro_fast` decodes with the writer's schema, so a decimal
//! comes out with the writer's scale, exact.
//!
//! ```
//! use kfn::registry::schema::AvroSchema;
//! use kfn::schema_check::resolution::can_read;
//!
//! let money = |fields: &str| AvroSchema::parse(&format!(
//!     r#"{{"type":"record","name":"Order","fields":[
//!         {{"name":"total","type":{{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}}}{fields}]}}"#
//! )).unwrap();
//! let v1 = money("");
//! let v2 = money(r#",{"name":"coupon","type":["null","string"],"default":null}"#);
//! assert!(can_read(&v1, &v2).is_ok() && can_read(&v2, &v1).is_ok());
//! let v3 = money(r#",{"name":"channel","type":"string"}"#);
//! assert!(can_read(&v1, &v3).unwrap_err().contains("channel"));
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::schema::{without_logical_types, AvroSchema};
use apache_avro::schema_compatibility::SchemaCompatibility;

/// Whether data written with `writer` can be read with `reader`; the error says why not.
pub fn can_read(writer: &AvroSchema, reader: &AvroSchema) -> Result<(), String> {
    let writer = underlying(writer)?;
    let reader = underlying(reader)?;
    // apache-avro is not known to panic here, but a check must report, not crash.
    catch_unwind(AssertUnwindSafe(|| SchemaCompatibility::can_read(&writer, &reader)))
        .map_err(|_| "the compatibility checker failed on these schemas".to_string())?
        .map_err(|e| e.to_string())
}

/// The schema with every logical type replaced by its underlying type.
fn underlying(schema: &AvroSchema) -> Result<apache_avro::Schema, String> {
    let stripped = AvroSchema::parse(&without_logical_types(schema.text())?)?;
    Ok(stripped.parsed().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> AvroSchema {
        AvroSchema::parse(&format!(r#"{{"type":"record","name":"R","namespace":"kfn","fields":[{fields}]}}"#)).unwrap()
    }

    const DECIMAL: &str = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;

    #[test]
    fn decimals_nested_in_arrays_of_records_resolve() {
        let price = format!(r#"{{"name":"price","type":{DECIMAL}}}"#);
        let item = format!(r#"{{"type":"array","items":{{"type":"record","name":"Item","fields":[{price}]}}}}"#);
        let v1_fields = format!(r#"{{"name":"items","type":{item}}},{{"name":"total","type":{DECIMAL}}}"#);
        let v1 = record(&v1_fields);
        let v2 = record(&format!(r#"{v1_fields},{{"name":"note","type":["null","string"],"default":null}}"#));
        // apache-avro alone cannot decide (the reason this module exists).
        assert!(SchemaCompatibility::can_read(v1.parsed(), v2.parsed()).is_err());
        assert_eq!(can_read(&v1, &v2), Ok(()));
        assert_eq!(can_read(&v2, &v1), Ok(()));
    }

    #[test]
    fn the_rules_still_apply_beneath_the_logical_types() {
        let ts = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
        let at = record(&format!(r#"{{"name":"at","type":{ts}}}"#));
        let at_int = record(r#"{"name":"at","type":"int"}"#);
        let at_string = record(r#"{"name":"at","type":"string"}"#);
        assert_eq!(can_read(&at_int, &at), Ok(()), "int promotes to long");
        assert!(can_read(&at, &at_int).is_err(), "long does not narrow to int");
        assert!(can_read(&at_string, &at).is_err());
        let missing = can_read(&record(""), &at).unwrap_err();
        assert!(missing.contains("at"), "{missing}");
        let money = record(&format!(r#"{{"name":"total","type":{DECIMAL}}}"#));
        assert!(can_read(&record(r#"{"name":"total","type":"string"}"#), &money).is_ok(), "string reads as bytes");
        assert!(can_read(&record(r#"{"name":"total","type":"double"}"#), &money).is_err());
    }

    /// Found by the `registry_body` fuzz target: a field whose own keys say
    /// `"logicalType": "decimal"` beside its `type` (apache-avro reads them as
    /// the type's) stayed a decimal once the logical types were taken off,
    /// and the schema was called incompatible with itself.
    #[test]
    fn a_logical_type_written_on_a_field_is_taken_off_too() {
        let on_field = record(r#"{"name":"total","type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#);
        assert_eq!(can_read(&on_field, &on_field), Ok(()));
        assert_eq!(can_read(&record(&format!(r#"{{"name":"total","type":{DECIMAL}}}"#)), &on_field), Ok(()));
    }

    #[test]
    fn defaults_are_left_as_they_are() {
        // A record default whose keys look like schema keywords is data, not a type.
        let inner = r#"{"type":"record","name":"Meta","fields":[{"name":"logicalType","type":"string"}]}"#;
        let with = record(&format!(r#"{{"name":"meta","type":{inner},"default":{{"logicalType":"x"}}}}"#));
        assert_eq!(can_read(&record(""), &with), Ok(()), "the default is still there, so old data reads");
    }
}
