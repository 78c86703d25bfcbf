//! Avro on the per-record path: Confluent framing, the schema registry
//! client, and the codec that resolves writer schemas and frames outputs.
//!
//! A record value is `0x00`, a 4-byte big-endian schema id, then an Avro
//! binary datum ([`framing`]). The id names the *writer's* schema in a
//! Confluent-compatible registry ([`RegistryClient`]); [`SchemaCache`] fetches
//! and parses each id once, and handlers decode their typed event through it.
//! Outputs are framed with their topic's schema by an [`OutputEncoder`].
//! The registry *server* lives in `crate::registry`; this is the client side.
//!
//! ```
//! use kfn::avro::{framing, value_subject};
//! assert_eq!(value_subject("orders.created"), "orders.created-value");
//! assert!(framing::split(b"{}").is_err()); // JSON, not Confluent-framed
//! ```

pub mod access;
pub mod api;
pub mod cache;
pub mod client;
pub mod codec;
pub mod compatibility;
pub mod error;
pub mod framing;

#[cfg(test)]
mod tests;

pub use api::{CompatibilityCheck, RegisteredSchema, SchemaReference, SubjectVersion, Version};
pub use cache::{register_topic_schema, SchemaCache};
pub use client::{value_subject, BasicAuth, RegistryAccess, RegistryClient};
pub use codec::{decode, OutputEncoder, WriterDatum};
pub use compatibility::CompatibilityLevel;
pub use error::{ApiError, ApiErrorKind, CodecError, FramingError, RegistryError};
