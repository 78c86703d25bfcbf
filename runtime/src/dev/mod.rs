//! The embedded local stack of `kfn dev`: a local broker (tansu, or Apache
//! Kafka with one or three nodes), the topics of functions.toml, and every
//! function in one process; with `--connect`, PostgreSQL and a Kafka Connect
//! worker beside them.

pub mod apache_kafka;
pub mod broker;
pub mod connect;
pub mod local;
pub mod maven;
pub mod ports;
pub mod postgres;
pub mod secure;
pub mod seed;
pub mod tansu;

pub use broker::{LocalBroker, LocalBrokerError, Storage};
pub use local::{BrokerKind, LocalCluster, LocalError, LocalOptions};
pub use ports::{ensure_free, PortTaken};
pub use tansu::{ensure_installed, InstallError};
