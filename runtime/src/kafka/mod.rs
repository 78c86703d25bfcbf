//! The Kafka layer: connections, admin, consumer groups, fetch and producers.
//!
//! Everything above this module sees members, partitions, records and
//! producers; API keys and wire versions stay in here.

pub mod acl;
pub mod admin;
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
pub use record::Header;
