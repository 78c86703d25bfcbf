//! The pure Avro codec: decode a datum with its writer's schema, and frame
//! an output event with its topic's schema. No I/O here: schemas come from
//! [`super::cache`], which asks the registry.
//!
//! Decoding is driven by the *writer's* schema (the id in the record's
//! header), parsed once into a [`serde_avro_fast::Schema`] and kept behind an
//! `Arc`; the handler's typed event reads through it, so fields the writer
//! added are skipped and fields it lacks take their serde defaults.
//!
//! ```
//! use std::str::FromStr;
//! use kfn::avro::decode;
//! let schema = serde_avro_fast::Schema::from_str(r#"{"type": "long"}"#).unwrap();
//! let n: i64 = decode(7, &schema, &[0x54]).unwrap(); // zig-zag 42
//! assert_eq!(n, 42);
//! ```

use std::str::FromStr;
use std::sync::Arc;

use kfn_sdk::ErasedEvent;
use serde::de::DeserializeOwned;
use serde_avro_fast::schema::SchemaMut;
use serde_avro_fast::Schema;

use super::error::CodecError;
use super::framing;

/// An input value split into its writer's schema and its datum.
#[derive(Clone)]
pub struct WriterDatum<'a> {
    /// The schema id from the value's header.
    pub schema_id: u32,
    /// The writer's schema, parsed.
    pub schema: Arc<Schema>,
    /// The Avro binary datum after the header.
    pub datum: &'a [u8],
}

impl WriterDatum<'_> {
    /// Decodes the datum into `E`, reading with the writer's schema.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, CodecError> {
        decode(self.schema_id, &self.schema, self.datum)
    }
}

impl std::fmt::Debug for WriterDatum<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterDatum").field("schema_id", &self.schema_id).field("datum_len", &self.datum.len()).finish()
    }
}

/// Decodes an Avro `datum` written with `schema` (id `schema_id`) into `E`.
///
/// An array or map may hold no more elements than the datum has bytes: an
/// element takes at least one byte, except one of a type that takes none
/// (null, a record without fields), of which a block count of 2^62 costs the
/// writer one varint and the reader all its memory (found by the `avro` fuzz
/// target, docs/fuzzing.md). serde_avro_fast's own bound is 10^9.
pub fn decode<E: DeserializeOwned>(schema_id: u32, schema: &Schema, datum: &[u8]) -> Result<E, CodecError> {
    use serde_avro_fast::de::{read::SliceRead, DeserializerConfig, DeserializerState};
    let mut config = DeserializerConfig::new(schema);
    config.max_seq_size = datum.len().max(16);
    let mut state = DeserializerState::with_config(SliceRead::new(datum), config);
    E::deserialize(state.deserializer()).map_err(|e| CodecError::Decode { id: schema_id, message: e.to_string() })
}

/// Frames events for one output topic with the topic's registered schema.
#[derive(Clone)]
pub struct OutputEncoder {
    topic: Arc<str>,
    schema_id: u32,
    schema: Arc<Schema>,
    /// The full name of the schema's top record, when it is one.
    record: Option<String>,
    /// For a JSON topic (`format = "json"`): its rows' Connect schema; no Avro, no framing.
    json: Option<Arc<crate::json::RowSchema>>,
}

impl OutputEncoder {
    /// An encoder writing with `schema`, registered as `schema_id` for `topic`.
    pub fn new(topic: impl Into<Arc<str>>, schema_id: u32, schema: Arc<Schema>) -> Self {
        // The frozen schema hides its nodes; its JSON re-parses into the inspectable form.
        let record = SchemaMut::from_str(schema.json())
            .ok()
            .and_then(|s| s.root().type_.name().map(|n| n.fully_qualified_name().to_owned()));
        Self { topic: topic.into(), schema_id, schema, record, json: None }
    }

    /// An encoder writing JSON rows with Connect's schema wrapper, for the JSON
    /// topic `topic` whose (flat record) schema is `schema`; nothing is registered.
    pub fn json(topic: impl Into<Arc<str>>, schema: Arc<Schema>) -> Result<Self, CodecError> {
        let topic = topic.into();
        let row = crate::json::RowSchema::from_avro(schema.json())
            .map_err(|message| CodecError::JsonRow { topic: topic.to_string(), message })?;
        Ok(Self { json: Some(Arc::new(row)), ..Self::new(topic, 0, schema) })
    }

    /// The output topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The id written in every record's header.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// The schema events are written with.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Replaces the contents of `out` with the framed value of `event`:
    /// header, then the datum. `out` keeps its capacity from record to record.
    pub fn encode(&self, event: &dyn ErasedEvent, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if let Some(expected) = &self.record {
            if expected != event.name() {
                return Err(CodecError::WrongEvent {
                    topic: self.topic.to_string(),
                    expected: expected.clone(),
                    actual: event.name(),
                });
            }
        }
        out.clear();
        if let Some(row) = &self.json {
            let encode = |message: String| CodecError::Encode {
                topic: self.topic.to_string(),
                source: kfn_sdk::EncodeError { event: event.name(), message },
            };
            let value =
                event.json_value().map_err(|source| CodecError::Encode { topic: self.topic.to_string(), source })?;
            let wrapped = row.wrap(value).map_err(encode)?;
            serde_json::to_writer(&mut *out, &wrapped).map_err(|e| encode(e.to_string()))?;
            return Ok(());
        }
        framing::write_header(self.schema_id, out);
        event.encode(&self.schema, out).map_err(|source| CodecError::Encode { topic: self.topic.to_string(), source })
    }
}

impl std::fmt::Debug for OutputEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputEncoder")
            .field("topic", &self.topic)
            .field("schema_id", &self.schema_id)
            .field("record", &self.record)
            .finish()
    }
}
