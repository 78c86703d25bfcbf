//! Tests of the fetch path over responses encoded with kafka-protocol.
//!
//! tansu, the dev broker, never returns aborted records, so these tests are
//! the proof that read_committed filtering works against Apache Kafka.

mod property;
mod request;
mod scenarios;
mod support;
