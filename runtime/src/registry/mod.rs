//! A Confluent-compatible Schema Registry that kfn serves itself, for local
//! use (`kfn registry`, `kfn dev`) and tests, where no Confluent Schema
//! Registry, Karapace or Apicurio can be installed.
//!
//! It speaks the Confluent REST API (subjects, versions, ids, soft and
//! permanent deletes, compatibility levels and checks) for Avro schemas, with
//! Confluent's error codes, and keeps its state in a compacted single-partition
//! Kafka topic (`_schemas` by default) as Confluent does: a restart rebuilds
//! the state from the topic, and several instances on one topic agree (see
//! [`store`] for how writes are settled without a leader). Nothing else in
//! kfn depends on this server; production points at its own registry.
//!
//! - [`api`]: routes and handlers; [`http`]: hyper plumbing;
//! - [`store`]: the topic and the follower that reads it;
//! - [`state`]: the state and the rules that apply each record; [`ops`]: the
//!   records each write request appends; [`record`]: their JSON format;
//! - [`schema`]: parsing and schema identity; [`compat`]: compatibility levels;
//! - [`error`]: Confluent error bodies and startup errors.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use kfn::kafka::{Cluster, ConnectOptions};
//! use kfn::registry::{RegistryConfig, RegistryServer};
//!
//! let cluster = Cluster::new(vec!["127.0.0.1:9092".into()], ConnectOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! let server = RegistryServer::start(cluster, listener, RegistryConfig::default()).await?;
//! println!("schema registry on http://{}", server.local_addr());
//! server.stop().await;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod compat;
pub mod error;
pub mod http;
pub mod ops;
pub mod record;
pub mod resolution;
pub mod schema;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kafka::Cluster;

pub use compat::CompatibilityLevel;
pub use error::{ApiErrorReply, RegistryServerError};
use store::Store;

/// Where the registry keeps its state and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The compacted topic holding every change (Confluent's default name: `_schemas`).
    pub topic: String,
    /// The topic's replication factor when the registry creates it.
    pub replication: i16,
    /// The largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a request may wait for the topic (reading to its end, writing).
    pub timeout: Duration,
    /// How long start-up may take to create and read the topic.
    pub load_timeout: Duration,
}

impl Default for RegistryConfig {
    /// `_schemas`, replication 1 (a local single broker), 1 MiB bodies,
    /// 10 s per request, 60 s to load.
    fn default() -> Self {
        RegistryConfig {
            topic: "_schemas".to_string(),
            replication: 1,
            max_body_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
            load_timeout: Duration::from_secs(60),
        }
    }
}

/// A running registry server.
pub struct RegistryServer {
    addr: SocketAddr,
    store: Store,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl RegistryServer {
    /// Creates the topic if needed, loads the state from it, and serves the
    /// API on `listener` (bind port 0 for a free port, see [`Self::local_addr`]).
    pub async fn start(
        cluster: Cluster,
        listener: TcpListener,
        config: RegistryConfig,
    ) -> Result<RegistryServer, RegistryServerError> {
        let addr = listener.local_addr()?;
        let store = Store::open(cluster, &config).await?;
        let (shutdown, stop) = watch::channel(false);
        let server = tokio::spawn(http::serve(listener, store.clone(), config.max_body_bytes, stop));
        tracing::info!(%addr, topic = %config.topic, "schema registry listening");
        Ok(RegistryServer { addr, store, shutdown, server })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish (up to 5 s), stops reading the topic.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "schema registry server task failed");
        }
        self.store.close().await;
        tracing::info!(addr = %self.addr, "schema registry stopped");
    }
}
