//! Kafka Connect connectors kept in the repository and applied through
//! Connect's REST API (`kfn connect apply`, and `kfn dev --connect`).
//!
//! A connector is one JSON file, `{"name": ..., "config": {...}}`: the body
//! Connect's own `POST /connectors` takes. kfn applies each with
//! `PUT /connectors/<name>/config` (create or replace, so applying twice
//! changes nothing), then waits until the connector and its tasks are
//! RUNNING, and shows Connect's own error text when a config is refused or a
//! task fails. Values such as `${env:KFN_POSTGRES_PORT}` are left to the
//! worker's config providers: the files hold no host, port or password.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kfn::connect::{apply, ConnectClient, ConnectorFile};
//! let client = ConnectClient::new("http://127.0.0.1:8083")?;
//! let connectors = ConnectorFile::load_dir("connect/connectors".as_ref())?;
//! apply(&client, &connectors, std::time::Duration::from_secs(120), |line| eprintln!("{line}")).await?;
//! # Ok(()) }
//! ```

mod client;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use client::{Applied, ConnectClient, ConnectError, ConnectorStatus, State, TaskState};

/// A connector file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorFileError {
    /// The file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not `{"name": ..., "config": {...}}`.
    #[error("{path}: expected {{\"name\": \"...\", \"config\": {{...}}}} with string values: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// One connector as the repository keeps it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFile {
    /// The connector's name in Connect.
    pub name: String,
    /// Its config; Connect takes every value as a string.
    pub config: Map<String, Value>,
    /// The file it came from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl ConnectorFile {
    /// Reads one connector file.
    pub fn load(path: &Path) -> Result<Self, ConnectorFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConnectorFileError::Read { path: path.to_path_buf(), source })?;
        let invalid = |source| ConnectorFileError::Invalid { path: path.to_path_buf(), source };
        let mut file: ConnectorFile = serde_json::from_str(&text).map_err(invalid)?;
        // Connect answers a number or a boolean with a 500, not with the field's name: say it here.
        if let Some((key, _)) = file.config.iter().find(|(_, v)| !v.is_string()) {
            let message = format!("config.{key} is not a string");
            return Err(invalid(serde::de::Error::custom(message)));
        }
        file.path = path.to_path_buf();
        Ok(file)
    }

    /// Every `*.json` file of `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>, ConnectorFileError> {
        let read = |source| ConnectorFileError::Read { path: dir.to_path_buf(), source };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
        paths.sort();
        paths.iter().map(|p| Self::load(p)).collect()
    }
}

/// Applies each connector (create or replace) and waits until it runs,
/// telling `progress` what happens; stops at the first one refused or failed.
pub async fn apply(
    client: &ConnectClient,
    connectors: &[ConnectorFile],
    wait: Duration,
    mut progress: impl FnMut(String),
) -> Result<(), ConnectError> {
    for connector in connectors {
        let applied = client.put_config(&connector.name, &connector.config).await?;
        let verb = match applied {
            Applied::Created => "created",
            Applied::Updated => "updated",
        };
        progress(format!("connector {}: {verb} from {}", connector.name, connector.path.display()));
        client
            .wait_running(&connector.name, wait, |status| {
                progress(format!("connector {}: {}", connector.name, status.summary()))
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repositorys_connectors_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../connect/connectors");
        let connectors = ConnectorFile::load_dir(&dir).unwrap();
        let names: Vec<_> = connectors.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["orders-to-postgres", "reservations-to-postgres", "shop-products"]);
        for c in &connectors {
            assert!(c.config.contains_key("connector.class"), "{}", c.name);
        }
    }

    #[test]
    fn a_number_in_a_config_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"name":"c","config":{"connector.class":"X","tasks.max":1}}"#).unwrap();
        let err = ConnectorFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("config.tasks.max is not a string"), "{err}");
        std::fs::write(&path, r#"{"name":"c","confg":{}}"#).unwrap();
        assert!(matches!(ConnectorFile::load(&path), Err(ConnectorFileError::Invalid { .. })));
    }
}
