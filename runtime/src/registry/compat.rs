//! Compatibility levels and the check a new schema must pass to be registered.
//!
//! The directions are Confluent's:
//! - BACKWARD: the new schema reads data written with the previous one
//!   (consumers upgrade first);
//! - FORWARD: the previous schema reads data written with the new one
//!   (producers upgrade first);
//! - FULL: both;
//! - the `_TRANSITIVE` variants check every earlier live version, the others
//!   only the latest; NONE checks nothing.
//!
//! The reading check itself is apache-avro's `SchemaCompatibility::can_read`
//! (writer, reader): type promotions (int to long, float, double), defaults
//! for fields the writer lacks, enum symbols, union branches and names, on the
//! underlying types of logical types (see `super::resolution`:
//! apache-avro alone refuses every schema with a decimal).
//!
//! ```
//! use kfn::registry::compat::{check, CompatibilityLevel};
//! use kfn::registry::schema::AvroSchema;
//!
//! let v1 = AvroSchema::parse(r#"{"type":"record","name":"r","fields":[{"name":"a","type":"int"}]}"#).unwrap();
//! let v2 = AvroSchema::parse(
//!     r#"{"type":"record","name":"r","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#,
//! ).unwrap();
//! // A new field without a default cannot be read from old data...
//! assert!(!check(CompatibilityLevel::Backward, &v2, &[&v1]).is_empty());
//! // ...but old readers skip it in new data.
//! assert!(check(CompatibilityLevel::Forward, &v2, &[&v1]).is_empty());
//! ```

use super::schema::AvroSchema;
pub use crate::avro::compatibility::{CompatibilityLevel, UnknownLevel};

/// Checks `new` against `previous` (oldest first) under `level`; returns why
/// it is incompatible, or nothing when it is compatible.
///
/// Non-transitive levels look at the last of `previous` only; the caller
/// passes the versions the level applies to (live ones, or one chosen version).
pub fn check(level: CompatibilityLevel, new: &AvroSchema, previous: &[&AvroSchema]) -> Vec<String> {
    let against: &[&AvroSchema] = match (level, previous.split_last()) {
        (CompatibilityLevel::None, _) | (_, None) => return Vec::new(),
        (level, Some((last, _))) if !level.is_transitive() => std::slice::from_ref(last),
        _ => previous,
    };
    let mut messages = Vec::new();
    // Newest first, as the latest version is the one a reader most likely holds.
    for old in against.iter().rev() {
        if level.backward() {
            if let Err(reason) = can_read(old, new) {
                messages.push(format!("the new schema cannot read data written with an earlier schema: {reason}"));
            }
        }
        if level.forward() {
            if let Err(reason) = can_read(new, old) {
                messages.push(format!("an earlier schema cannot read data written with the new schema: {reason}"));
            }
        }
    }
    messages
}

/// Whether data written with `writer` can be read with `reader`.
fn can_read(writer: &AvroSchema, reader: &AvroSchema) -> Result<(), String> {
    super::resolution::can_read(writer, reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CompatibilityLevel::*;

    fn record(fields: &str) -> AvroSchema {
        AvroSchema::parse(&format!(r#"{{"type":"record","name":"Order","namespace":"kfn","fields":[{fields}]}}"#))
            .unwrap()
    }

    const ID: &str = r#"{"name":"id","type":"string"}"#;

    /// One schema change and, per level, whether registering it is allowed.
    struct Case {
        change: &'static str,
        old: AvroSchema,
        new: AvroSchema,
        backward: bool,
        forward: bool,
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                change: "add optional field with default",
                old: record(ID),
                new: record(&format!(r#"{ID},{{"name":"note","type":["null","string"],"default":null}}"#)),
                backward: true,
                forward: true,
            },
            Case {
                change: "add field without default",
                old: record(ID),
                new: record(&format!(r#"{ID},{{"name":"qty","type":"int"}}"#)),
                backward: false,
                forward: true,
            },
            Case {
                change: "remove field without default",
                old: record(&format!(r#"{ID},{{"name":"qty","type":"int"}}"#)),
                new: record(ID),
                backward: true,
                forward: false,
            },
            Case {
                change: "remove field with default",
                old: record(&format!(r#"{ID},{{"name":"qty","type":"int","default":1}}"#)),
                new: record(ID),
                backward: true,
                forward: true,
            },
            Case {
                change: "int to long (promotable)",
                old: record(r#"{"name":"qty","type":"int"}"#),
                new: record(r#"{"name":"qty","type":"long"}"#),
                backward: true,
                forward: false,
            },
            Case {
                change: "long to int",
                old: record(r#"{"name":"qty","type":"long"}"#),
                new: record(r#"{"name":"qty","type":"int"}"#),
                backward: false,
                forward: true,
            },
            Case {
                change: "string to int",
                old: record(r#"{"name":"qty","type":"string"}"#),
                new: record(r#"{"name":"qty","type":"int"}"#),
                backward: false,
                forward: false,
            },
            Case { change: "identical", old: record(ID), new: record(ID), backward: true, forward: true },
        ]
    }

    #[test]
    fn every_level_against_every_change() {
        for case in cases() {
            for level in CompatibilityLevel::ALL {
                let expected = match level {
                    None => true,
                    Backward | BackwardTransitive => case.backward,
                    Forward | ForwardTransitive => case.forward,
                    Full | FullTransitive => case.backward && case.forward,
                };
                let messages = check(level, &case.new, &[&case.old]);
                assert_eq!(messages.is_empty(), expected, "{} under {level}: {messages:?}", case.change);
            }
        }
    }

    #[test]
    fn transitive_levels_check_every_earlier_version() {
        // v1 has qty without default, v2 drops it, v3 adds it back with a
        // different type: v3 reads v2 data (no qty: default used) but not v1's long qty.
        let v1 = record(&format!(r#"{ID},{{"name":"qty","type":"long"}}"#));
        let v2 = record(ID);
        let v3 = record(&format!(r#"{ID},{{"name":"qty","type":"int","default":0}}"#));
        assert!(check(Backward, &v3, &[&v1, &v2]).is_empty());
        let transitive = check(BackwardTransitive, &v3, &[&v1, &v2]);
        assert_eq!(transitive.len(), 1, "{transitive:?}");
        assert!(transitive[0].contains("qty"), "{transitive:?}");
    }

    #[test]
    fn nothing_to_check_against_is_compatible() {
        let v1 = record(ID);
        for level in CompatibilityLevel::ALL {
            assert!(check(level, &v1, &[]).is_empty(), "{level}");
        }
    }

    #[test]
    fn levels_parse_case_insensitively_and_print_as_confluent() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().parse::<CompatibilityLevel>(), Ok(level));
            assert_eq!(level.as_str().to_lowercase().parse::<CompatibilityLevel>(), Ok(level));
        }
        assert_eq!("FULLTRANSITIVE".parse::<CompatibilityLevel>(), Err(UnknownLevel("FULLTRANSITIVE".into())));
        assert_eq!(CompatibilityLevel::default(), Backward);
    }
}
