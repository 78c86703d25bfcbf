//! Security for the broker connections kfn opens itself: TLS and SASL.
//!
//! The split keeps I/O and Kafka framing out of this module:
//! - [`tls`] turns [`TlsSettings`] (PEM file paths) into a
//!   `tokio_rustls::TlsConnector`; the connection code wraps its TCP stream
//!   with it.
//! - [`sasl`] produces and consumes the raw SASL messages of PLAIN,
//!   SCRAM-SHA-256 and SCRAM-SHA-512 ([`SaslExchange`]). The connection code
//!   drives it: SaslHandshake names [`Mechanism::as_str`], then each message
//!   from [`SaslExchange::initial`] / [`Step::Send`] goes out in a
//!   SaslAuthenticate request and the response's `auth_bytes` come back into
//!   [`SaslExchange::step`] until it answers [`Step::Done`].
//!
//! ```
//! use kfn_kafka::security::{Mechanism, SaslCredentials, SaslExchange, Step};
//!
//! let creds = SaslCredentials::new(Mechanism::Plain, "kfn", "secret");
//! let mut exchange = SaslExchange::new(&creds)?;
//! assert_eq!(exchange.initial()?, b"\0kfn\0secret");
//! // The broker's (empty) SaslAuthenticate answer ends a PLAIN exchange.
//! assert_eq!(exchange.step(b"")?, Step::Done);
//! # Ok::<(), kfn_kafka::security::SecurityError>(())
//! ```
//!
//! A SCRAM exchange is complete only once the broker's final message proved
//! that the broker knows the credentials: kfn checks that signature itself
//! rather than trusting a broker to reject a client that skips it.

use std::path::PathBuf;

use thiserror::Error;

pub mod sasl;
mod scram;
pub mod tls;

pub use sasl::{Mechanism, SaslCredentials, SaslExchange, Step};
pub use tls::{connector, server_name, untrusted_certificate, TlsSettings};

/// What can go wrong while setting up TLS or authenticating with SASL.
#[derive(Debug, Error)]
pub enum SecurityError {
    /// A TLS file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file is not valid PEM.
    #[error("invalid PEM in {}: {source}", path.display())]
    InvalidPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser reported.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("no certificate found in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key block.
    #[error("no private key found in {} (expected a PKCS#8, PKCS#1 or SEC1 PEM block)", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate was rejected as a trust anchor.
    #[error("certificate in {} cannot be used as a CA: {source}", path.display())]
    InvalidCertificate {
        /// The CA file.
        path: PathBuf,
        /// Why rustls rejected it.
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    /// Only one of the client certificate and its key was configured.
    #[error("TLS client authentication needs both cert_file and key_file; {missing} is missing")]
    IncompleteClientCertificate {
        /// The setting that is missing.
        missing: &'static str,
    },
    /// The client certificate and key do not form a usable pair.
    #[error("client certificate {} with key {} is unusable: {source}", cert_file.display(), key_file.display())]
    ClientCertificate {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// Why rustls rejected them.
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    /// rustls refused the protocol configuration.
    #[error("TLS configuration rejected: {source}")]
    TlsConfig {
        /// Why rustls rejected it.
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    /// The broker's certificate failed verification: signed by a CA kfn does
    /// not trust, issued for another name, expired. Retrying cannot help.
    #[error(
        "broker {broker} presented a certificate kfn does not trust ({reason}); set [security].tls.ca to the CA \
         that signed it, or tls.server_name when the certificate names another host than the one dialled"
    )]
    UntrustedCertificate {
        /// host:port.
        broker: String,
        /// rustls' reason, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
    },
    /// A host is neither a DNS name nor an IP address.
    #[error("'{name}' cannot be used as a TLS server name: {reason}")]
    InvalidServerName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A SASL mechanism name kfn does not support.
    #[error("unsupported SASL mechanism '{name}' (expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")]
    UnsupportedMechanism {
        /// The name as configured.
        name: String,
    },
    /// The SASL library could not start a session for the mechanism.
    #[error("cannot start SASL {mechanism} for user '{username}': {reason}")]
    SaslSetup {
        /// The mechanism.
        mechanism: Mechanism,
        /// The user (never the password).
        username: String,
        /// What the SASL library reported.
        reason: String,
    },
    /// The exchange was driven out of order (a bug in the caller).
    #[error("SASL {mechanism} exchange used out of order: {reason}")]
    SaslOutOfOrder {
        /// The mechanism.
        mechanism: Mechanism,
        /// Which call came at the wrong time.
        reason: &'static str,
    },
    /// Authentication failed: wrong credentials, a broker that could not
    /// prove it knows them, or a malformed broker message.
    #[error("SASL {mechanism} authentication failed for user '{username}': {reason}")]
    AuthenticationFailed {
        /// The mechanism.
        mechanism: Mechanism,
        /// The user (never the password).
        username: String,
        /// What went wrong.
        reason: String,
    },
}
