//! A secured local Apache Kafka, as production runs it: the client listener
//! speaks SASL_SSL (SCRAM-SHA-512 inside TLS, the broker's certificate
//! checked against kfn's local CA and the address dialled), the
//! StandardAuthorizer enforces ACLs (`allow.everyone.if.no.acl.found=false`),
//! and one admin user (`super.users`) creates topics and ACLs.
//!
//! `kfn dev --secure` and the integration tests start it. Every user is
//! created at format time with a random password (the data directory lives as
//! long as the cluster, so the passwords do too): the admin, the schema
//! registry, and whichever users the caller names (`kfn-<function>` for each
//! function). The CA and the broker's certificate are made once with rcgen
//! into kfn's cache directory (`secure/`), so clients can keep trusting the
//! same CA file across restarts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kfn::dev::secure::SecureError> {
//! use kfn::dev::secure::{SecureKafka, SecureOptions, ADMIN_USER};
//! let kafka = SecureKafka::start(SecureOptions {
//!     users: vec!["kfn-validation".into()],
//!     ..SecureOptions::default()
//! })
//! .await?;
//! let admin = kafka.security(ADMIN_USER)?; // [security] for the admin
//! # drop(admin);
//! # Ok(()) }
//! ```
//!
//! A second client listener speaks mTLS: a client certificate of the local CA
//! ([`issue_client_certificate`]) whose CN is a user authenticates as
//! `User:<CN>`, the same principal (and ACLs) as that SCRAM user.
//!
//! What it does not secure: the nodes talk to each other and to the KRaft
//! controller on plaintext listeners bound to 127.0.0.1, as `User:ANONYMOUS`,
//! which must then be a super user (see `apache_kafka::KafkaOptions::super_users`).
//! A production cluster secures those listeners too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

use super::apache_kafka::{KafkaOptions, LocalKafka, LocalKafkaError, ServerTls};
use super::tansu::cache_dir;
use crate::config::{SaslSettings, SecurityProtocol, SecuritySettings, TlsSettings};

/// The user that bypasses ACLs: creates topics, applies ACLs.
pub const ADMIN_USER: &str = "kfn-admin";
/// The schema registry's user (its `_schemas` topic only).
pub const REGISTRY_USER: &str = "kfn-registry";
/// The SASL mechanism of the secured listener.
pub const MECHANISM: &str = "SCRAM-SHA-512";

/// Why the secured cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    /// The CA or the broker's certificate could not be made.
    #[error("making the local CA and broker certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A file of the certificates could not be read or written.
    #[error("secured Apache Kafka: {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not start.
    #[error(transparent)]
    Kafka(#[from] LocalKafkaError),
    /// A user the cluster was not started with.
    #[error("user {0:?} was not created on the secured cluster (known: the admin, the registry and the users of SecureOptions)")]
    UnknownUser(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecureError + '_ {
    move |source| SecureError::Io { path: path.to_path_buf(), source }
}

/// The PEM files of the local CA and the broker.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// The CA certificate clients trust (`[security].tls.ca`).
    pub ca: PathBuf,
    /// The broker's key and certificate (for 127.0.0.1 and localhost) in one PEM file.
    pub keystore: PathBuf,
}

/// The local CA's parameters: the same every time, so that the CA can be
/// rebuilt from its key (`ca-key.pem`) to issue client certificates later.
fn ca_params() -> Result<CertificateParams, SecureError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "kfn local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// A client certificate and its key (PEM files).
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The certificate (`[security].tls.cert`).
    pub cert: PathBuf,
    /// Its private key (`[security].tls.key`).
    pub key: PathBuf,
}

/// Issues a client certificate for `user` (its CN, hence the principal
/// `User:<user>` on the mTLS listener) signed by the local CA of `cert_dir`,
/// written to `out/<user>.{crt,key}`.
pub fn issue_client_certificate(cert_dir: &Path, user: &str, out: &Path) -> Result<ClientCertificate, SecureError> {
    issue_client_certificate_valid(cert_dir, user, out, None)
}

/// [`issue_client_certificate`], valid only from January 1st of the first
/// year to January 1st of the second (without it, rcgen's long validity):
/// for showing that an expired certificate is refused.
pub fn issue_client_certificate_valid(
    cert_dir: &Path,
    user: &str,
    out: &Path,
    years: Option<(i32, i32)>,
) -> Result<ClientCertificate, SecureError> {
    let key_path = cert_dir.join("ca-key.pem");
    let ca_key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let ca = ca_params()?.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(vec![user.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, user);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if let Some((from, until)) = years {
        (params.not_before, params.not_after) = (rcgen::date_time_ymd(from, 1, 1), rcgen::date_time_ymd(until, 1, 1));
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let issued = ClientCertificate { cert: out.join(format!("{user}.crt")), key: out.join(format!("{user}.key")) };
    std::fs::write(&issued.cert, cert.pem()).map_err(io(&issued.cert))?;
    write_private(&issued.key, &key.serialize_pem())?;
    Ok(issued)
}

/// The CA and the broker's certificate in `dir`, made the first time.
///
/// A lock file keeps test binaries that start at once from making two CAs.
pub fn certificates(dir: &Path) -> Result<Certificates, SecureError> {
    let files = Certificates { ca: dir.join("ca.pem"), keystore: dir.join("broker-keystore.pem") };
    let ca_key_path = dir.join("ca-key.pem");
    let made = || files.ca.is_file() && files.keystore.is_file() && ca_key_path.is_file();
    if made() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join("certificates.lock");
    let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    if made() {
        return Ok(files);
    }
    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&ca_key)?;
    write_private(&ca_key_path, &ca_key.serialize_pem())?;
    // The names clients dial: kfn checks the address against these (hostname verification).
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    server.distinguished_name.push(DnType::CommonName, "kfn local broker");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca, &ca_key)?;
    // Kafka's PEM keystore (KIP-651): the unencrypted PKCS#8 key, then the certificate.
    write_private(&files.keystore, &format!("{}{}", server_key.serialize_pem(), server_cert.pem()))?;
    std::fs::write(&files.ca, ca.pem()).map_err(io(&files.ca))?;
    Ok(files)
}

/// Writes a file only its owner can read (it holds a private key).
fn write_private(path: &Path, text: &str) -> Result<(), SecureError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))
}

/// How to start the secured cluster.
#[derive(Debug, Clone)]
pub struct SecureOptions {
    /// Nodes (1, or 3).
    pub nodes: u32,
    /// Client port of the first node; None: free ports.
    pub port: Option<u16>,
    /// Users besides the admin and the registry (e.g. `kfn-<function>`), each with a random password.
    pub users: Vec<String>,
    /// Where the CA and broker certificate live; None: `secure/` in kfn's cache directory.
    pub cert_dir: Option<PathBuf>,
    /// Discard the nodes' output.
    pub quiet: bool,
}

impl Default for SecureOptions {
    fn default() -> Self {
        Self { nodes: 1, port: None, users: Vec::new(), cert_dir: None, quiet: true }
    }
}

/// A running secured cluster; stopped on [`SecureKafka::stop`] or drop.
pub struct SecureKafka {
    kafka: LocalKafka,
    certificates: Certificates,
    cert_dir: PathBuf,
    passwords: BTreeMap<String, String>,
}

impl SecureKafka {
    /// Makes the certificates if needed, then formats and starts the cluster
    /// with every user, and waits until it accepts connections.
    pub async fn start(options: SecureOptions) -> Result<Self, SecureError> {
        let dir = match options.cert_dir {
            Some(dir) => dir,
            None => cache_dir().map_err(LocalKafkaError::from)?.join("secure"),
        };
        let dir_for_clients = dir.clone();
        let certificates = tokio::task::spawn_blocking(move || certificates(&dir)).await.map_err(|e| {
            SecureError::Io { path: PathBuf::from("(certificates)"), source: std::io::Error::other(e) }
        })??;
        let mut passwords = BTreeMap::new();
        for user in [ADMIN_USER, REGISTRY_USER].into_iter().chain(options.users.iter().map(String::as_str)) {
            // Letters and digits only: the password goes into StorageTool's `--add-scram` syntax.
            passwords.entry(user.to_string()).or_insert_with(|| Alphanumeric.sample_string(&mut rand::rng(), 24));
        }
        let kafka = LocalKafka::start(KafkaOptions {
            nodes: options.nodes,
            port: options.port,
            scram_users: passwords.iter().map(|(u, p)| (u.clone(), p.clone())).collect(),
            tls: Some(ServerTls { keystore: certificates.keystore.clone(), client_ca: None }),
            // Client certificates of the same local CA ([`issue_client_certificate`]).
            mtls: Some(ServerTls { keystore: certificates.keystore.clone(), client_ca: Some(certificates.ca.clone()) }),
            enforce_acls: true,
            super_users: vec![ADMIN_USER.to_string()],
            quiet: options.quiet,
            ..KafkaOptions::default()
        })
        .await?;
        Ok(Self { kafka, certificates, cert_dir: dir_for_clients, passwords })
    }

    /// The bootstrap list of the mTLS listener (client certificates, principal from the CN).
    pub fn mtls_bootstrap(&self) -> &str {
        self.kafka.mtls_bootstrap().unwrap_or_default()
    }

    /// Issues a client certificate for `user` into `out` (see [`issue_client_certificate`]).
    pub fn client_certificate(&self, user: &str, out: &Path) -> Result<ClientCertificate, SecureError> {
        issue_client_certificate(&self.cert_dir, user, out)
    }

    /// The directory of the CA (and its key).
    pub fn cert_dir(&self) -> &Path {
        &self.cert_dir
    }

    /// The bootstrap list, `host:port` comma-separated.
    pub fn bootstrap(&self) -> &str {
        self.kafka.bootstrap()
    }

    /// The bootstrap list as `host:port` entries.
    pub fn brokers(&self) -> Vec<String> {
        self.bootstrap().split(',').map(str::to_string).collect()
    }

    /// The CA certificate (PEM) clients trust.
    pub fn ca(&self) -> &Path {
        &self.certificates.ca
    }

    /// The password of `user`.
    pub fn password(&self, user: &str) -> Result<&str, SecureError> {
        self.passwords.get(user).map(String::as_str).ok_or_else(|| SecureError::UnknownUser(user.to_string()))
    }

    /// Every user and its password.
    pub fn passwords(&self) -> &BTreeMap<String, String> {
        &self.passwords
    }

    /// The `[security]` settings of a client authenticating as `user`.
    pub fn security(&self, user: &str) -> Result<SecuritySettings, SecureError> {
        let password = self.password(user)?.to_string();
        Ok(SecuritySettings {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(SaslSettings {
                mechanism: MECHANISM.to_string(),
                username: user.to_string(),
                password_env: String::new(),
                password,
            }),
            tls: Some(TlsSettings { ca_file: Some(self.certificates.ca.clone()), ..TlsSettings::default() }),
            ..SecuritySettings::default()
        })
    }

    /// Stops every node and removes their data.
    pub fn stop(self) {
        self.kafka.stop();
    }
}
