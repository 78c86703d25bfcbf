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
//! - [`api`]: routes and handlers; [`http`]: hyper plumbing; [`access`]: TLS
//!   and basic-auth users (both off by default);
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

pub mod access;
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

pub use access::{ServerTls, Users};
pub use compat::CompatibilityLevel;
pub use error::{AccessError, ApiErrorReply, RegistryServerError};
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
    /// Serve https with this certificate; `None` serves plain http.
    pub tls: Option<ServerTls>,
    /// Require HTTP basic auth as one of these users; `None` lets anyone in.
    pub users: Option<Users>,
}

impl Default for RegistryConfig {
    /// `_schemas`, replication 1 (a local single broker), 1 MiB bodies,
    /// 10 s per request, 60 s to load; plain http, no authentication.
    fn default() -> Self {
        RegistryConfig {
            topic: "_schemas".to_string(),
            replication: 1,
            max_body_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
            load_timeout: Duration::from_secs(60),
            tls: None,
            users: None,
        }
    }
}

/// A running registry server.
pub struct RegistryServer {
    addr: SocketAddr,
    tls: bool,
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
        // Bad TLS files or users fail before the topic is touched.
        let tls = config.tls.as_ref().map(ServerTls::acceptor).transpose()?;
        if config.users.as_ref().is_some_and(Users::is_empty) {
            return Err(AccessError::Users {
                origin: "the registry's configuration".to_owned(),
                reason: "basic auth is on but no user is configured".to_owned(),
            }
            .into());
        }
        let access = http::Access { tls, users: config.users.clone() };
        let store = Store::open(cluster, &config).await?;
        let (shutdown, stop) = watch::channel(false);
        let server = tokio::spawn(http::serve(listener, store.clone(), config.max_body_bytes, access, stop));
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, topic = %config.topic, scheme, basic_auth = config.users.is_some(), "schema registry listening");
        Ok(RegistryServer { addr, tls: config.tls.is_some(), store, shutdown, server })
    }

    /// `https` when the server serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
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
