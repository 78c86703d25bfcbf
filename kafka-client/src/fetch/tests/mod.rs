//! Tests of the fetch path over responses encoded with kafka-protocol.
//!
//! The dev broker (tansu) lists no aborted transactions and never sends the
//! answers Apache Kafka does (aborted lists, markers beyond the LSO), so these
//! tests are the proof that read_committed works on both kinds of broker.

mod markers;
mod property;
mod request;
mod scenarios;
mod support;
