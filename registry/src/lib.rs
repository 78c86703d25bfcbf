//! Avro and the Schema Registry for kfn, apart from the runtime so that they
//! compile beside it: the per-record Avro codec with Confluent framing and
//! the registry client ([`avro`]), JSON topics as Kafka Connect writes them
//! ([`json`]), and the Confluent-compatible registry server kfn runs for
//! local use and tests ([`registry`]).
//!
//! The runtime re-exports all three (`kfn::avro`, `kfn::json`,
//! `kfn::registry`); this crate needs only the Kafka layer and the SDK.

#![warn(missing_docs)]

pub mod avro;
pub mod json;
pub mod registry;

// The paths the modules were written with inside the runtime crate.
use kfn_kafka as kafka;
use kfn_kafka::backoff;
