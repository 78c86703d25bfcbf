//! kfn's Kafka client: connections (TLS, SASL), metadata, admin, consumer
//! groups, fetch and producers, spoken with kafka-protocol.
//!
//! The `kfn` runtime sees members, partitions, records and producers; API keys
//! and wire versions stay in here. The crate knows nothing of functions.toml,
//! the SDK or handlers (the compiler keeps it so), and it compiles beside the
//! runtime's other dependencies in a cold build. `kfn` re-exports it as
//! `kfn::kafka`.

#![warn(missing_docs)]

pub mod acl;
pub mod admin;
pub mod backoff;
pub mod cluster;
pub mod compression;
pub mod conn;
pub mod consumer;
pub mod error;
pub mod fetch;
pub mod group;
pub mod lag;
pub mod producer;
pub mod record;
pub mod security;

pub use admin::{Admin, CreateOutcome, NewTopic, TopicDescription};
pub use cluster::{Cluster, CoordinatorKind};
pub use conn::{ConnectOptions, Connection};
pub use error::KafkaError;
/// A broker's error code, as kafka-protocol names it (what [`KafkaError::response_error`] gives).
pub use kafka_protocol::ResponseError;
pub use record::Header;
