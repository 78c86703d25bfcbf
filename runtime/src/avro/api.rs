//! The request and answer bodies of the Confluent Schema Registry REST API,
//! as far as kfn uses them. Fields the client does not need are ignored, so
//! registries that answer with more (Confluent's `subject`, Apicurio's extras)
//! are read the same.

use serde::{Deserialize, Serialize};

/// A reference from a schema to a named type registered under another subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaReference {
    /// The full name of the referenced type.
    pub name: String,
    /// The subject it is registered under.
    pub subject: String,
    /// The version of that subject.
    pub version: i32,
}

/// A schema as the registry stores it under an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// The global id, as written in the Confluent header of records.
    pub id: u32,
    /// The schema text.
    pub schema: String,
    /// `AVRO`, `PROTOBUF` or `JSON`.
    pub schema_type: String,
    /// Named types the schema takes from other subjects.
    pub references: Vec<SchemaReference>,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The schema's global id.
    pub id: u32,
    /// The version number within the subject, from 1.
    pub version: i32,
    /// The schema text.
    pub schema: String,
    /// `AVRO`, `PROTOBUF` or `JSON`.
    #[serde(rename = "schemaType", default = "avro")]
    pub schema_type: String,
    /// Named types the schema takes from other subjects.
    #[serde(default)]
    pub references: Vec<SchemaReference>,
}

/// Which version of a subject to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The newest version.
    Latest,
    /// A version number, from 1.
    Number(i32),
}

/// The answer to a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompatibilityCheck {
    /// Whether the schema may be registered under the subject.
    pub is_compatible: bool,
    /// Why not, when the registry says (Confluent's `verbose=true`).
    #[serde(default)]
    pub messages: Vec<String>,
}

pub(crate) fn avro() -> String {
    "AVRO".to_owned()
}

#[derive(Deserialize)]
pub(crate) struct IdAnswer {
    pub(crate) id: u32,
}

#[derive(Deserialize)]
pub(crate) struct SchemaAnswer {
    pub(crate) schema: String,
    #[serde(rename = "schemaType", default = "avro")]
    pub(crate) schema_type: String,
    #[serde(default)]
    pub(crate) references: Vec<SchemaReference>,
}

#[derive(Deserialize)]
pub(crate) struct ConfigAnswer {
    // Confluent answers `compatibilityLevel`; some registries `compatibility`.
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    pub(crate) level: super::compatibility::CompatibilityLevel,
}

#[derive(Deserialize)]
pub(crate) struct ErrorAnswer {
    pub(crate) error_code: Option<i32>,
    pub(crate) message: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SchemaBody<'a> {
    pub(crate) schema: &'a str,
}
