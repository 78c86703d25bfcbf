//! Who may talk to the registry server, and how: TLS from a certificate and
//! key PEM file ([`ServerTls`]), and HTTP basic auth against a set of users
//! ([`Users`]). Both are off by default, so `kfn registry` serves plain http
//! to anyone unless told otherwise.
//!
//! Passwords come from environment variables (`--registry-user NAME=ENV`) or from
//! a file of `name:password` lines (`--registry-users-file`); they are never on the
//! command line, where `ps` would show them.
//!
//! ```
//! use kfn::registry::access::Users;
//! let mut users = Users::default();
//! users.insert("orders", "s3cret");
//! assert!(users.check(Some("Basic b3JkZXJzOnMzY3JldA==")).is_ok()); // orders:s3cret
//! assert_eq!(users.check(None).unwrap_err().status.as_u16(), 401);
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::error::{AccessError, ApiErrorReply};
use crate::kafka::security::tls::{certificates, private_key};

/// The server's certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl ServerTls {
    /// Reads both files into a TLS acceptor (HTTP/1.1 over TLS 1.2 or 1.3).
    pub fn acceptor(&self) -> Result<TlsAcceptor, AccessError> {
        let chain = certificates(&self.cert_file).map_err(|source| AccessError::TlsFiles(Box::new(source)))?;
        let key = private_key(&self.key_file).map_err(|source| AccessError::TlsFiles(Box::new(source)))?;
        let certificate = |source| AccessError::Certificate {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            source: Box::new(source),
        };
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(certificate)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(certificate)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The users HTTP basic auth accepts, by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Users {
    passwords: BTreeMap<String, String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("names", &self.passwords.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Users {
    /// Adds (or replaces) a user.
    pub fn insert(&mut self, name: impl Into<String>, password: impl Into<String>) {
        self.passwords.insert(name.into(), password.into());
    }

    /// Whether no user is known.
    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }

    /// Adds a user whose password is in the environment variable `env`.
    pub fn insert_from_env(&mut self, name: &str, env: &str) -> Result<(), AccessError> {
        let password = std::env::var(env).map_err(|_| AccessError::Users {
            origin: format!("--registry-user {name}={env}"),
            reason: format!("environment variable {env} holds no password (it is unset or not UTF-8)"),
        })?;
        self.insert_checked(name, password, || format!("--registry-user {name}={env}"))
    }

    /// Adds the users of a file of `name:password` lines (blank lines and
    /// lines starting with `#` are skipped).
    pub fn insert_from_file(&mut self, path: &Path) -> Result<(), AccessError> {
        let text = std::fs::read_to_string(path).map_err(|e| AccessError::Users {
            origin: path.display().to_string(),
            reason: format!("cannot read it: {e}"),
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let origin = || format!("{}, line {}", path.display(), n + 1);
            let (name, password) = line.split_once(':').ok_or_else(|| AccessError::Users {
                origin: origin(),
                reason: "expected `name:password`".to_owned(),
            })?;
            self.insert_checked(name.trim(), password.to_owned(), origin)?;
        }
        Ok(())
    }

    fn insert_checked(&mut self, name: &str, password: String, origin: impl Fn() -> String) -> Result<(), AccessError> {
        // Basic auth splits at the first ':', so a name cannot hold one.
        if name.is_empty() || name.contains(':') {
            return Err(AccessError::Users {
                origin: origin(),
                reason: format!("{name:?} is not a user name (empty, or holds ':')"),
            });
        }
        if password.is_empty() {
            return Err(AccessError::Users {
                origin: origin(),
                reason: format!("user {name:?} has an empty password"),
            });
        }
        self.insert(name, password);
        Ok(())
    }

    /// Checks an `Authorization` header; the user's name when it is accepted,
    /// a 401 saying why when not.
    pub fn check(&self, header: Option<&str>) -> Result<&str, ApiErrorReply> {
        let header = header.ok_or_else(|| ApiErrorReply::unauthorized("no credentials; send HTTP basic auth"))?;
        let (scheme, token) = header.trim().split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(ApiErrorReply::unauthorized(format!(
                "{scheme:?} credentials; only HTTP basic auth is accepted"
            )));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| ApiErrorReply::unauthorized("malformed basic credentials (not base64 of name:password)"))?;
        let (name, password) = decoded
            .split_once(':')
            .ok_or_else(|| ApiErrorReply::unauthorized("malformed basic credentials (no ':' after the name)"))?;
        match self.passwords.get_key_value(name) {
            Some((known, expected)) if same_secret(expected, password) => Ok(known),
            Some(_) => Err(ApiErrorReply::unauthorized(format!("wrong password for user {name:?}"))),
            None => Err(ApiErrorReply::unauthorized(format!("unknown user {name:?}"))),
        }
    }
}

/// Compares digests in constant time, so the time an answer takes does not
/// tell how much of a guessed password was right.
fn same_secret(expected: &str, given: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let (a, b) = (digest(expected), digest(given));
    a.as_ref().iter().zip(b.as_ref()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password))
    }

    #[test]
    fn basic_credentials_are_checked() {
        let mut users = Users::default();
        users.insert("orders", "pa:ss");
        assert_eq!(users.check(Some(&basic("orders:pa:ss"))).unwrap(), "orders");
        let wrong = users.check(Some(&basic("orders:nope"))).unwrap_err();
        assert_eq!((wrong.status.as_u16(), wrong.code), (401, 401));
        assert!(wrong.message.contains("wrong password for user \"orders\""), "{wrong}");
        assert!(users.check(Some(&basic("nobody:pa:ss"))).unwrap_err().message.contains("unknown user"));
        assert!(users.check(None).unwrap_err().message.contains("no credentials"));
        assert!(users.check(Some("Bearer abc")).unwrap_err().message.contains("only HTTP basic"));
        assert!(users.check(Some("Basic !!!")).unwrap_err().message.contains("malformed"));
        assert!(!format!("{users:?}").contains("pa:ss"));
    }

    #[test]
    fn users_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "# registry users\norders:one\n\nfunctions:two:three\n").unwrap();
        let mut users = Users::default();
        users.insert_from_file(&path).unwrap();
        assert!(users.check(Some(&basic("orders:one"))).is_ok());
        assert!(users.check(Some(&basic("functions:two:three"))).is_ok());

        std::fs::write(&path, "orders:one\nno password here\n").unwrap();
        let err = Users::default().insert_from_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("name:password"), "{err}");
        std::fs::write(&path, "orders:\n").unwrap();
        let err = Users::default().insert_from_file(&path).unwrap_err().to_string();
        assert!(err.contains("empty password"), "{err}");
    }

    #[test]
    fn a_missing_password_variable_is_named() {
        let err = Users::default().insert_from_env("orders", "KFN_TEST_SURELY_UNSET_PASSWORD").unwrap_err();
        assert!(err.to_string().contains("KFN_TEST_SURELY_UNSET_PASSWORD"), "{err}");
    }

    #[test]
    fn unreadable_tls_files_are_named() {
        let tls = ServerTls { cert_file: "/nonexistent/cert.pem".into(), key_file: "/nonexistent/key.pem".into() };
        let err = tls.acceptor().err().expect("no such file").to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
