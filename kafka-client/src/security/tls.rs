//! TLS for the broker connections kfn opens itself: a `tokio-rustls` connector
//! built from PEM files.
//!
//! rustls runs with the `ring` crypto provider. The trust store is the CA file
//! when one is configured, otherwise Mozilla's roots from `webpki-roots`
//! (compiled in, so a container without `ca-certificates` still works). A
//! client certificate is optional; when given, its key may be PKCS#8, PKCS#1
//! or SEC1.
//!
//! ```no_run
//! use kfn_kafka::security::{connector, TlsSettings};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = TlsSettings {
//!     ca_file: Some("certs/ca.pem".into()),
//!     ..TlsSettings::default()
//! };
//! let tls = connector(&settings)?;
//! let tcp = tokio::net::TcpStream::connect("broker-1:9093").await?;
//! let stream = tls.connect(settings.server_name_for("broker-1")?, tcp).await?;
//! # drop(stream);
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::SecurityError;

/// Where the TLS material for broker connections comes from.
///
/// All paths are read once, when [`connector`] builds the connector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file of the CA certificate(s) that signed the brokers' certificates;
    /// `None` trusts Mozilla's public roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain for mutual TLS (needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Name to verify the broker's certificate against instead of the host
    /// the connection dials (e.g. when brokers are reached by IP address).
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// The name to verify for a connection to `host`: the configured
    /// `server_name` when set, else `host` itself.
    pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, SecurityError> {
        server_name(self.server_name.as_deref().unwrap_or(host))
    }
}

/// Builds a TLS connector from `settings`.
///
/// Errors name the file and what is wrong with it, e.g. "no certificate
/// found in certs/ca.pem".
pub fn connector(settings: &TlsSettings) -> Result<TlsConnector, SecurityError> {
    let roots = match &settings.ca_file {
        Some(path) => roots_from_file(path)?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };

    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|source| SecurityError::TlsConfig { source })?
        .with_root_certificates(roots);

    let config = match (&settings.cert_file, &settings.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
            let chain = certificates(cert_file)?;
            let key = private_key(key_file)?;
            builder.with_client_auth_cert(chain, key).map_err(|source| SecurityError::ClientCertificate {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                source,
            })?
        }
        (Some(_), None) => return Err(SecurityError::IncompleteClientCertificate { missing: "key_file" }),
        (None, Some(_)) => return Err(SecurityError::IncompleteClientCertificate { missing: "cert_file" }),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Parses `host` (a DNS name or an IP address) as the name a broker's
/// certificate is verified against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, SecurityError> {
    ServerName::try_from(host.to_owned())
        .map_err(|source| SecurityError::InvalidServerName { name: host.to_owned(), reason: source.to_string() })
}

/// The handshake error `error` as [`SecurityError::UntrustedCertificate`]
/// when rustls refused the broker's certificate; any other error is given back.
///
/// tokio-rustls reports a refused certificate as an I/O error carrying the
/// `rustls::Error`; told apart, it stops being a retriable connection failure.
pub fn untrusted_certificate(broker: &str, error: std::io::Error) -> Result<SecurityError, std::io::Error> {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(refused @ rustls::Error::InvalidCertificate(_)) => {
            Ok(SecurityError::UntrustedCertificate { broker: broker.to_string(), reason: refused.to_string() })
        }
        _ => Err(error),
    }
}

/// Reads every certificate of a CA PEM file into a trust store.
fn roots_from_file(path: &Path) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|source| SecurityError::InvalidCertificate { path: path.to_owned(), source })?;
    }
    Ok(roots)
}

/// Reads the certificates of a PEM file, failing when it holds none.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let mut reader = open(path)?;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| SecurityError::InvalidPem { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(SecurityError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    let mut reader = open(path)?;
    rustls_pemfile::private_key(&mut reader)
        .map_err(|source| SecurityError::InvalidPem { path: path.to_owned(), source })?
        .ok_or_else(|| SecurityError::NoPrivateKey { path: path.to_owned() })
}

fn open(path: &Path) -> Result<BufReader<File>, SecurityError> {
    File::open(path).map(BufReader::new).map_err(|source| SecurityError::ReadFile { path: path.to_owned(), source })
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
