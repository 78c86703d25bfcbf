//! kfn: a serverless-style function runtime for Apache Kafka.
//!
//! `functions.toml` declares topics and functions; handlers live in the
//! `kfn-functions` crate; this crate validates the declaration
//! ([`config`]), talks to the brokers ([`kafka`]), and runs everything.

pub mod avro;
pub mod config;
pub mod cli;
pub mod dev;
pub mod kafka;
