//! The records of the `_schemas` topic: JSON keys and values, close to
//! Confluent's own layout, one record per state change.
//!
//! | key | value |
//! |-----|-------|
//! | `{"keytype":"SCHEMA","subject":"s","version":1,"writer":"<hex>"}` | `{"subject":"s","version":1,"id":1,"schemaType":"AVRO","schema":"...","deleted":false}` |
//! | `{"keytype":"CONFIG","subject":"s"}` (`null` subject: global) | `{"compatibilityLevel":"FULL"}` |
//!
//! A null value is a tombstone: it removes the entry with that exact key (a
//! permanent delete, or a subject's level reset). The `writer` field makes the
//! keys of two registry instances that race for the same version differ, so
//! compaction keeps both records and every reader can settle the race the same
//! way (the earlier record wins, see [`super::state`]). Records written by
//! Confluent Schema Registry (no `writer`, `magic` fields, `DELETE_SUBJECT`
//! markers) are read too; other key types (`NOOP`, `MODE`, ...) are skipped.
//!
//! ```
//! use kfn::registry::record::{LogKey, SchemaValue};
//!
//! let key = LogKey::schema("orders-value", 1, "0123456789abcdef");
//! let bytes = key.encode();
//! assert_eq!(LogKey::decode(&bytes).unwrap(), key);
//! let value = SchemaValue { subject: "orders-value".into(), version: 1, id: 1, schema: "\"string\"".into(), deleted: false };
//! assert_eq!(SchemaValue::decode(&value.encode()).unwrap(), value);
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::compat::CompatibilityLevel;

/// The key of a record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogKey {
    /// One version of one subject.
    Schema {
        /// The subject.
        subject: String,
        /// The version under the subject.
        version: i32,
        /// The registry instance that wrote it (absent in Confluent's records).
        writer: Option<String>,
    },
    /// A compatibility level: a subject's, or the global one (`None`).
    Config {
        /// The subject, or `None` for the global level.
        subject: Option<String>,
    },
    /// Confluent's soft delete of a subject: every version up to `version` is deleted.
    DeleteSubject {
        /// The subject.
        subject: String,
    },
    /// Anything else (Confluent's NOOP, MODE, ...): skipped.
    Other(String),
}

#[derive(Serialize, Deserialize)]
struct RawKey {
    keytype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer: Option<String>,
}

/// A key or value that is not in the expected format.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what} in the schemas log: {reason}")]
pub struct MalformedRecord {
    /// "key" or "value".
    pub what: &'static str,
    /// Why it could not be read.
    pub reason: String,
}

fn malformed(what: &'static str, reason: impl ToString) -> MalformedRecord {
    MalformedRecord { what, reason: reason.to_string() }
}

impl LogKey {
    /// The key of `subject`'s `version`, written by `writer`.
    pub fn schema(subject: &str, version: i32, writer: &str) -> LogKey {
        LogKey::Schema { subject: subject.to_string(), version, writer: Some(writer.to_string()) }
    }

    /// The key of a compatibility level (`None`: the global one).
    pub fn config(subject: Option<&str>) -> LogKey {
        LogKey::Config { subject: subject.map(str::to_string) }
    }

    /// The JSON bytes of the key.
    pub fn encode(&self) -> Bytes {
        let raw = match self {
            LogKey::Schema { subject, version, writer } => RawKey {
                keytype: "SCHEMA".into(),
                subject: Some(subject.clone()),
                version: Some(*version),
                writer: writer.clone(),
            },
            LogKey::Config { subject } => {
                RawKey { keytype: "CONFIG".into(), subject: subject.clone(), version: None, writer: None }
            }
            LogKey::DeleteSubject { subject } => {
                RawKey { keytype: "DELETE_SUBJECT".into(), subject: Some(subject.clone()), version: None, writer: None }
            }
            LogKey::Other(keytype) => RawKey { keytype: keytype.clone(), subject: None, version: None, writer: None },
        };
        // A struct of strings and integers always serializes.
        Bytes::from(serde_json::to_vec(&raw).unwrap_or_default())
    }

    /// Reads a key.
    pub fn decode(bytes: &[u8]) -> Result<LogKey, MalformedRecord> {
        let raw: RawKey = serde_json::from_slice(bytes).map_err(|e| malformed("key", e))?;
        let subject = |raw: &RawKey| raw.subject.clone().ok_or_else(|| malformed("key", "no subject"));
        Ok(match raw.keytype.as_str() {
            "SCHEMA" => LogKey::Schema {
                subject: subject(&raw)?,
                version: raw.version.ok_or_else(|| malformed("key", "no version"))?,
                writer: raw.writer,
            },
            "CONFIG" => LogKey::Config { subject: raw.subject },
            "DELETE_SUBJECT" => LogKey::DeleteSubject { subject: subject(&raw)? },
            other => LogKey::Other(other.to_string()),
        })
    }
}

/// The value of a SCHEMA record: one version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    /// The subject.
    pub subject: String,
    /// The version under the subject.
    pub version: i32,
    /// The global schema id.
    pub id: i32,
    /// The schema text as registered.
    pub schema: String,
    /// Soft-deleted.
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Serialize)]
struct SchemaValueOut<'a> {
    subject: &'a str,
    version: i32,
    id: i32,
    #[serde(rename = "schemaType")]
    schema_type: &'static str,
    schema: &'a str,
    deleted: bool,
}

#[derive(Deserialize)]
struct SchemaValueIn {
    subject: String,
    version: i32,
    id: i32,
    schema: String,
    #[serde(default)]
    deleted: bool,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

impl SchemaValue {
    /// The JSON bytes of the value.
    pub fn encode(&self) -> Bytes {
        let out = SchemaValueOut {
            subject: &self.subject,
            version: self.version,
            id: self.id,
            schema_type: "AVRO",
            schema: &self.schema,
            deleted: self.deleted,
        };
        Bytes::from(serde_json::to_vec(&out).unwrap_or_default())
    }

    /// Reads a value; schemas of other types (JSON, PROTOBUF) are refused.
    pub fn decode(bytes: &[u8]) -> Result<SchemaValue, MalformedRecord> {
        let raw: SchemaValueIn = serde_json::from_slice(bytes).map_err(|e| malformed("value", e))?;
        if let Some(kind) = raw.schema_type.filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
            return Err(malformed("value", format!("schema type {kind} is not Avro")));
        }
        Ok(SchemaValue {
            subject: raw.subject,
            version: raw.version,
            id: raw.id,
            schema: raw.schema,
            deleted: raw.deleted,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

/// The JSON bytes of a CONFIG value.
pub fn encode_config(level: CompatibilityLevel) -> Bytes {
    let value = ConfigValue { compatibility_level: level.as_str().to_string() };
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// Reads a CONFIG value.
pub fn decode_config(bytes: &[u8]) -> Result<CompatibilityLevel, MalformedRecord> {
    let value: ConfigValue = serde_json::from_slice(bytes).map_err(|e| malformed("value", e))?;
    value.compatibility_level.parse().map_err(|e| malformed("value", e))
}

/// Reads the value of Confluent's DELETE_SUBJECT record: the highest deleted version.
pub fn decode_delete_subject(bytes: &[u8]) -> Result<i32, MalformedRecord> {
    #[derive(Deserialize)]
    struct DeleteSubjectValue {
        version: i32,
    }
    let value: DeleteSubjectValue = serde_json::from_slice(bytes).map_err(|e| malformed("value", e))?;
    Ok(value.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for key in [
            LogKey::schema("s", 3, "abc"),
            LogKey::Schema { subject: "s".into(), version: 1, writer: None },
            LogKey::config(Some("s")),
            LogKey::config(None),
            LogKey::DeleteSubject { subject: "s".into() },
            LogKey::Other("NOOP".into()),
        ] {
            assert_eq!(LogKey::decode(&key.encode()).unwrap(), key);
        }
    }

    #[test]
    fn confluent_records_are_understood() {
        let key = LogKey::decode(br#"{"keytype":"SCHEMA","subject":"t-value","version":2,"magic":1}"#).unwrap();
        assert_eq!(key, LogKey::Schema { subject: "t-value".into(), version: 2, writer: None });
        let value =
            SchemaValue::decode(br#"{"subject":"t-value","version":2,"id":5,"schema":"\"int\"","deleted":false}"#)
                .unwrap();
        assert_eq!(value.id, 5);
        assert_eq!(LogKey::decode(br#"{"keytype":"NOOP","magic":0}"#).unwrap(), LogKey::Other("NOOP".into()));
        assert_eq!(
            decode_config(br#"{"compatibilityLevel":"FULL_TRANSITIVE"}"#).unwrap(),
            CompatibilityLevel::FullTransitive
        );
        assert_eq!(decode_delete_subject(br#"{"subject":"t-value","version":4}"#).unwrap(), 4);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert!(LogKey::decode(b"not json").is_err());
        assert!(LogKey::decode(br#"{"keytype":"SCHEMA","subject":"s"}"#).is_err());
        assert!(SchemaValue::decode(br#"{"subject":"s"}"#).is_err());
        assert!(SchemaValue::decode(br#"{"subject":"s","version":1,"id":1,"schema":"{}","schemaType":"PROTOBUF"}"#)
            .is_err());
        assert!(decode_config(br#"{"compatibilityLevel":"SIDEWAYS"}"#).is_err());
    }
}
