//! Harness of the SASL and TLS tests: Apache Kafka with a SCRAM client
//! listener (SASL_PLAINTEXT) or a TLS one (SSL, optionally demanding a client
//! certificate), certificates made with rcgen, and a proxy that rewrites the
//! broker's final SCRAM message.

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ResponseHeader, SaslAuthenticateResponse};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A user with a password on the SCRAM broker.
pub const USER: &str = "kfn-test";
/// That user's password.
pub const PASSWORD: &str = "kfn-test-secret";

/// Apache Kafka whose client listener requires SASL/SCRAM, with [`USER`]
/// registered for SCRAM-SHA-256 and SCRAM-SHA-512 (at format time).
pub struct SaslBroker {
    kafka: kfn::dev::apache_kafka::LocalKafka,
}

impl SaslBroker {
    /// Starts a one-node cluster of its own.
    pub async fn start() -> anyhow::Result<Self> {
        let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
        let options = kfn::dev::apache_kafka::KafkaOptions {
            scram_users: vec![(USER.to_string(), PASSWORD.to_string())],
            quiet,
            ..Default::default()
        };
        let kafka = kfn::dev::apache_kafka::LocalKafka::start(options).await.context("Apache Kafka with SCRAM")?;
        Ok(Self { kafka })
    }

    /// host:port of the broker.
    pub fn addr(&self) -> &str {
        self.kafka.bootstrap()
    }
}

/// A CA made for one test.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// PEM files of a certificate and its key.
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Ca {
    /// A self-signed CA called `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<PathBuf> {
        std::fs::write(path, self.cert.pem())?;
        Ok(path.to_path_buf())
    }

    /// A broker certificate for 127.0.0.1 and localhost, written to `dir/<name>.{crt,key}`.
    pub fn server(&self, dir: &Path, name: &str) -> anyhow::Result<Issued> {
        self.issue(dir, name, vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `name`, written to `dir/<name>.{crt,key}`.
    pub fn client(&self, dir: &Path, name: &str) -> anyhow::Result<Issued> {
        self.issue(dir, name, vec![name.to_string()], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        dir: &Path,
        name: &str,
        sans: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let issued = Issued { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&issued.cert, cert.pem())?;
        std::fs::write(&issued.key, key.serialize_pem())?;
        Ok(issued)
    }
}

/// Apache Kafka whose client listener speaks TLS (SSL) with a certificate of
/// the test's CA, for 127.0.0.1; with `require_client_cert` it demands a
/// client certificate signed by the test's client CA.
pub struct TlsBroker {
    /// host:port of the TLS listener.
    pub addr: String,
    /// The CA that signed the broker's certificate (PEM).
    pub ca: PathBuf,
    /// Another CA, which signed nothing here (PEM).
    pub other_ca: PathBuf,
    /// A client certificate the broker accepts when it requires one.
    pub client: Issued,
    /// The test's files.
    pub dir: tempfile::TempDir,
    _kafka: kfn::dev::apache_kafka::LocalKafka,
}

impl TlsBroker {
    /// Starts a one-node cluster of its own with a TLS client listener.
    pub async fn start(require_client_cert: bool) -> anyhow::Result<Self> {
        Self::start_with(require_client_cert, false).await
    }

    /// Like [`TlsBroker::start`], the listener also requiring SASL/SCRAM as
    /// [`USER`] (SASL_SSL) when `scram`.
    pub async fn start_with(require_client_cert: bool, scram: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = Ca::new("kfn test CA")?;
        let client_ca = Ca::new("kfn test client CA")?;
        let server = ca.server(dir.path(), "broker")?;
        let client = client_ca.client(dir.path(), "kfn-client")?;
        let ca_file = ca.write(&dir.path().join("ca.pem"))?;
        let client_ca_file = client_ca.write(&dir.path().join("client-ca.pem"))?;
        let other_ca = Ca::new("kfn unrelated CA")?.write(&dir.path().join("other-ca.pem"))?;
        // Kafka's PEM keystore: the private key and the certificate in one file.
        let keystore = dir.path().join("broker-keystore.pem");
        std::fs::write(
            &keystore,
            format!("{}{}", std::fs::read_to_string(&server.key)?, std::fs::read_to_string(&server.cert)?),
        )?;
        let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
        let options = kfn::dev::apache_kafka::KafkaOptions {
            tls: Some(kfn::dev::apache_kafka::ServerTls {
                keystore,
                client_ca: require_client_cert.then(|| client_ca_file.clone()),
            }),
            scram_users: if scram { vec![(USER.to_string(), PASSWORD.to_string())] } else { Vec::new() },
            quiet,
            ..Default::default()
        };
        let kafka = kfn::dev::apache_kafka::LocalKafka::start(options).await.context("Apache Kafka with TLS")?;
        Ok(Self { addr: kafka.bootstrap().to_string(), ca: ca_file, other_ca, client, dir, _kafka: kafka })
    }
}

/// SaslAuthenticate's API key.
const SASL_AUTHENTICATE: i16 = 36;

/// A forwarding proxy that counts connections and SaslAuthenticate requests
/// and, when told to, replaces the signature in the broker's final SCRAM
/// message (`v=...`) with a wrong one: a man in the middle that lets the
/// client in without knowing the password.
pub struct SaslProxy {
    /// 127.0.0.1 port clients connect to.
    pub port: u16,
    connections: Arc<AtomicUsize>,
    authenticates: Arc<AtomicUsize>,
    tampered: Arc<AtomicUsize>,
}

impl SaslProxy {
    /// Forwards every connection to `upstream`, tampering with server-final messages when `tamper`.
    pub async fn start(upstream: String, tamper: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::from_std({
            let l = StdListener::bind(("127.0.0.1", 0))?;
            l.set_nonblocking(true)?;
            l
        })?;
        let port = listener.local_addr()?.port();
        let counters = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, a, t) = (counters.0.clone(), counters.1.clone(), counters.2.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (upstream, a, t) = (upstream.clone(), a.clone(), t.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = pump(client, server, tamper, a, t).await;
                    }
                });
            }
        });
        Ok(Self { port, connections: counters.0, authenticates: counters.1, tampered: counters.2 })
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// SaslAuthenticate requests forwarded so far.
    pub fn authenticates(&self) -> usize {
        self.authenticates.load(Ordering::SeqCst)
    }

    /// Server-final messages rewritten so far.
    pub fn tampered(&self) -> usize {
        self.tampered.load(Ordering::SeqCst)
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(stream: &mut R) -> std::io::Result<BytesMut> {
    let len = stream.read_i32().await?;
    let mut frame = BytesMut::zeroed(usize::try_from(len).map_err(std::io::Error::other)?);
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn pump(
    client: TcpStream,
    server: TcpStream,
    tamper: bool,
    authenticates: Arc<AtomicUsize>,
    tampered: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Correlation id -> version of the SaslAuthenticate requests under way.
    let sasl: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
    let requests = sasl.clone();
    let upstream = async move {
        loop {
            let frame = read_frame(&mut client_read).await?;
            // Every request header starts with api key, api version, correlation id.
            if frame.len() >= 8 && i16::from_be_bytes([frame[0], frame[1]]) == SASL_AUTHENTICATE {
                authenticates.fetch_add(1, Ordering::SeqCst);
                let version = i16::from_be_bytes([frame[2], frame[3]]);
                let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                requests.lock().unwrap_or_else(|p| p.into_inner()).insert(correlation, version);
            }
            server_write.write_i32(frame.len() as i32).await?;
            server_write.write_all(&frame).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    let downstream = async move {
        loop {
            let mut frame = read_frame(&mut server_read).await?;
            let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let version = sasl.lock().unwrap_or_else(|p| p.into_inner()).remove(&correlation);
            if let (true, Some(version)) = (tamper, version) {
                if let Some(rewritten) = forge_server_final(&mut frame, version) {
                    tampered.fetch_add(1, Ordering::SeqCst);
                    frame = rewritten;
                }
            }
            client_write.write_i32(frame.len() as i32).await?;
            client_write.write_all(&frame).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

/// The frame with its server-final signature changed, if it carries one.
fn forge_server_final(frame: &mut BytesMut, version: i16) -> Option<BytesMut> {
    let original = frame.clone();
    let header_version = SaslAuthenticateResponse::header_version(version);
    let header = ResponseHeader::decode(frame, header_version).ok()?;
    let mut response = SaslAuthenticateResponse::decode(frame, version).ok()?;
    let bytes = response.auth_bytes.to_vec();
    if response.error_code != 0 || !bytes.starts_with(b"v=") || bytes.len() < 3 {
        *frame = original;
        return None;
    }
    // Another base64 letter changes the signature's first six bits: still
    // well-formed, never the right proof.
    let mut forged = bytes;
    forged[2] = if forged[2] == b'A' { b'B' } else { b'A' };
    response.auth_bytes = Bytes::from(forged);
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).ok()?;
    response.encode(&mut out, version).ok()?;
    Some(out)
}
