//! The schema checks of `kfn check`, beyond what the configuration validates.
//!
//! - [`graph`] (offline, always run): every function that consumes a topic
//!   can read what is written to it. Writers (the functions emitting on the
//!   topic, and anyone else) write with the topic's schema file; the handler
//!   reads with its event type, whose schema is the file of the project's
//!   `schemas/` folder declaring that type's Avro full name ([`ReaderSchemas`]).
//!   Avro schema resolution ([`resolution`]) decides whether the reader can
//!   read the writer.
//! - [`registry`] (online, opt-in): each topic's schema file could be
//!   registered as the next version of its subject (`<topic>-value`) in the
//!   Schema Registry, asked with the registry's own compatibility check and
//!   without registering anything.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kfn::schema_check::{check_graph, check_registry, ReaderSchemas};
//! # fn my_app_registry() -> kfn_sdk::Registry { kfn_sdk::Registry::default() }
//! let handlers = my_app_registry(); // the handlers of your crate
//! let config = kfn::config::Config::load("functions.toml".as_ref(), &handlers)?;
//! let readers = ReaderSchemas::from_dir(&config.base_dir().join("schemas"))?;
//! let graph = check_graph(&config, &handlers, &readers);
//! assert!(graph.problems.is_empty(), "{:?}", graph.problems);
//! let client = kfn::schema_check::registry::check_client("http://127.0.0.1:8081")?;
//! let report = check_registry(&config, &client).await;
//! for topic in &report.topics {
//!     println!("{topic}");
//! }
//! # Ok(()) }
//! ```

pub mod graph;
pub mod registry;

/// Avro schema resolution, shared with the registry server's compatibility checks.
pub use crate::registry::resolution;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use graph::{check_graph, GraphRead, GraphReport, ReaderSchemas};
pub use registry::{check_registry, RegistryReport, TopicVerdict, Verdict};

/// A schema check could not be run at all (as opposed to finding a problem).
#[derive(Debug, thiserror::Error)]
pub enum SchemaCheckError {
    /// The folder of the event schemas could not be listed or a file in it read.
    #[error("cannot read the event schemas at {path}: {source}")]
    Read {
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The registry URL cannot be used.
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
}

/// `path` relative to `base` when it is under it, for shorter messages.
pub(crate) fn shown(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}
