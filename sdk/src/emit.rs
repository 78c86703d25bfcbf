//! What a handler returns: events for its declared outputs.

use std::borrow::Cow;

use bytes::Bytes;

use crate::Event;

/// A record header: a name and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value (Kafka allows null).
    pub value: Option<Bytes>,
}

/// An event could not be encoded with the output topic's schema.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {event} with the output's schema: {message}")]
pub struct EncodeError {
    /// The event's Avro full name.
    pub event: &'static str,
    /// What the encoder said.
    pub message: String,
}

/// A type-erased event, encodable with the schema of the topic it goes to.
pub trait ErasedEvent: Send + Sync {
    /// The Avro full name of the event.
    fn name(&self) -> &'static str;
    /// Appends the Avro datum of the event, written with `schema`, to `out`.
    fn encode(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// The event as JSON-like debug text, for logs and `kfn dlq show`.
    fn debug(&self) -> String;
    /// The event as JSON (serde's form of it), for outputs to JSON topics.
    fn json_value(&self) -> Result<serde_json::Value, EncodeError> {
        Err(EncodeError { event: self.name(), message: "this event has no JSON form".into() })
    }
}

impl<T: Event + std::fmt::Debug> ErasedEvent for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn encode(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut config = serde_avro_fast::ser::SerializerConfig::new(schema);
        let buf = std::mem::take(out);
        match serde_avro_fast::to_datum(self, buf, &mut config) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(e) => Err(EncodeError { event: T::NAME, message: e.to_string() }),
        }
    }

    fn debug(&self) -> String {
        format!("{self:?}")
    }

    fn json_value(&self) -> Result<serde_json::Value, EncodeError> {
        serde_json::to_value(self).map_err(|e| EncodeError { event: T::NAME, message: e.to_string() })
    }
}

/// One event bound for one output.
pub struct Emitted {
    /// The output's name, as declared under `outputs` in functions.toml.
    pub output: Cow<'static, str>,
    /// The record key.
    pub key: Option<Bytes>,
    /// The event.
    pub value: Box<dyn ErasedEvent>,
    /// Extra headers to write with the record.
    pub headers: Vec<Header>,
}

impl std::fmt::Debug for Emitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitted")
            .field("output", &self.output)
            .field("key", &self.key)
            .field("value", &self.value.debug())
            .finish()
    }
}

/// The events a handler emits: zero, one or many, to one or several outputs.
#[derive(Debug, Default)]
pub struct Emit {
    /// The events, in the order they are produced.
    pub events: Vec<Emitted>,
}

impl Emit {
    /// Nothing to emit.
    pub fn none() -> Self {
        Self::default()
    }

    /// One event with a key to one output.
    pub fn one<E: Event + std::fmt::Debug>(output: &'static str, key: impl Into<String>, event: E) -> Self {
        Self::none().and(output, key, event)
    }

    /// Adds an event with a key for an output.
    pub fn and<E: Event + std::fmt::Debug>(mut self, output: &'static str, key: impl Into<String>, event: E) -> Self {
        self.push(output, key, event);
        self
    }

    /// Adds an event with a key for an output.
    pub fn push<E: Event + std::fmt::Debug>(&mut self, output: &'static str, key: impl Into<String>, event: E) {
        self.events.push(Emitted {
            output: Cow::Borrowed(output),
            key: Some(Bytes::from(key.into())),
            value: Box::new(event),
            headers: Vec::new(),
        });
    }

    /// Adds a header to the event pushed last.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        if let Some(last) = self.events.last_mut() {
            last.headers.push(Header { name: name.into(), value: Some(value.into()) });
        }
        self
    }

    /// Whether there is nothing to emit.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
