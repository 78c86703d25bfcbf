//! How the registry client reaches a registry beyond its URL: HTTP basic
//! credentials and, for `https://` URLs, which CA the server's certificate
//! must chain to.
//!
//! TLS is rustls through `hyper-rustls`, fed the very `ClientConfig` the Kafka
//! layer builds for brokers ([`crate::kafka::security::connector`]): a CA PEM
//! file when one is configured, else Mozilla's roots. The certificate is
//! checked against the URL's host (a DNS name or an IP address SAN).
//!
//! ```no_run
//! # fn demo() -> Result<(), kfn::avro::RegistryError> {
//! use kfn::avro::{BasicAuth, RegistryAccess, RegistryClient};
//! let access = RegistryAccess {
//!     auth: Some(BasicAuth { username: "orders".into(), password: std::env::var("REGISTRY_PASSWORD").unwrap_or_default() }),
//!     ca_file: Some("certs/registry-ca.pem".into()),
//! };
//! let registry = RegistryClient::with_access("https://registry.internal:8081", access)?;
//! # drop(registry); Ok(()) }
//! ```

use std::error::Error as StdError;
use std::path::PathBuf;

use base64::Engine as _;
use hyper::header::HeaderValue;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio_rustls::rustls;

use super::error::RegistryError;
use crate::kafka::security::{connector, TlsSettings};

/// HTTP basic credentials for the registry (`basic.auth.user.info` in Confluent clients).
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name (an API key on Confluent Cloud).
    pub username: String,
    /// The password (an API secret on Confluent Cloud).
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth").field("username", &self.username).finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// The `Authorization` header value: `Basic base64(user:password)`.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password));
        HeaderValue::from_str(&format!("Basic {token}")).ok()
    }
}

/// Credentials and trust for one registry; the default is neither (plain
/// `http://`, or `https://` trusting Mozilla's public roots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    /// Basic credentials sent with every request.
    pub auth: Option<BasicAuth>,
    /// PEM file of the CA(s) that signed the registry's certificate; `None`
    /// trusts Mozilla's public roots. Only used for `https://` URLs.
    pub ca_file: Option<PathBuf>,
}

impl RegistryAccess {
    /// What the server's certificate is checked against, for error messages.
    pub(crate) fn trust(&self) -> String {
        match &self.ca_file {
            Some(path) => format!("the CA in {}", path.display()),
            None => "Mozilla's public roots (no CA file configured)".to_owned(),
        }
    }
}

/// The connector of the client: https with the access's trust, http as is.
pub(crate) fn https_connector(
    url: &str,
    access: &RegistryAccess,
) -> Result<HttpsConnector<HttpConnector>, RegistryError> {
    let settings = TlsSettings { ca_file: access.ca_file.clone(), ..TlsSettings::default() };
    let tls = connector(&settings)
        .map_err(|source| RegistryError::TlsSetup { url: url.to_owned(), source: Box::new(source) })?;
    // hyper-rustls sets ALPN itself and refuses a config that already has it; the Kafka one has none.
    let config = rustls::ClientConfig::clone(&**tls.config());
    Ok(HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build())
}

/// The rustls error somewhere in the chain of a connection error, if the
/// connection failed in the TLS handshake.
pub(crate) fn tls_failure(error: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found.clone());
        }
        // io::Error::source skips the error it wraps: look inside explicitly.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            if let Some(found) = tls_failure(inner) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}
