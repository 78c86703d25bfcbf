//! Tests of `tls.rs`: certificates made with rcgen, real TLS handshakes over
//! 127.0.0.1 against a tokio-rustls acceptor.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{connector, server_name, untrusted_certificate, SecurityError, TlsSettings};

/// A CA and its key.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A leaf certificate for `san` with the given purpose, signed by this CA.
    fn issue(&self, san: &str, purpose: ExtendedKeyUsagePurpose) -> (rcgen::Certificate, KeyPair) {
        let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, san);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert, key)
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        Arc::new(roots)
    }
}

fn write(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config presenting a "localhost" certificate from `ca`, requiring
/// client certificates signed by `client_ca` when given.
fn server_config(ca: &Ca, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    let (cert, key) = ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        Some(client_ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(client_ca.roots(), provider()).build().unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

/// Serves TLS on 127.0.0.1: each connection reads "ping" and answers "pong".
async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake is what several tests expect; the
                // client sees it as an error or an alert.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut ping = [0u8; 4];
                if tls.read_exact(&mut ping).await.is_ok() && &ping == b"ping" {
                    let _ = tls.write_all(b"pong").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects, sends "ping" and returns the answer, verifying the server as
/// `name`.
async fn round_trip(tls: &TlsConnector, addr: SocketAddr, name: &str) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = server_name(name).map_err(std::io::Error::other)?;
        let mut stream = tls.connect(name, tcp).await?;
        stream.write_all(b"ping").await?;
        stream.flush().await?;
        let mut pong = [0u8; 4];
        stream.read_exact(&mut pong).await?;
        Ok(pong.to_vec())
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| std::io::Error::other("TLS round trip timed out"))?
}

fn settings(ca_file: Option<&Path>) -> TlsSettings {
    TlsSettings { ca_file: ca_file.map(Path::to_owned), ..TlsSettings::default() }
}

/// Client files for mutual TLS: (settings with CA, cert and key).
fn client_settings(dir: &TempDir, server_ca: &Ca, client_ca: &Ca) -> TlsSettings {
    let (cert, key) = client_ca.issue("kfn-client", ExtendedKeyUsagePurpose::ClientAuth);
    TlsSettings {
        ca_file: Some(write(dir, "ca.pem", &server_ca.cert.pem())),
        cert_file: Some(write(dir, "client.pem", &cert.pem())),
        key_file: Some(write(dir, "client.key", &key.serialize_pem())),
        server_name: None,
    }
}

#[test]
fn connector_accepts_generated_pem_files() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn test CA");
    let settings = client_settings(&dir, &ca, &ca);
    connector(&settings).unwrap();
    // The compiled-in Mozilla roots when no CA file is given.
    connector(&TlsSettings::default()).unwrap();
}

#[tokio::test]
async fn handshake_with_configured_ca_exchanges_bytes() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn test CA");
    let addr = serve(server_config(&ca, None)).await;
    let tls = connector(&settings(Some(&write(&dir, "ca.pem", &ca.cert.pem())))).unwrap();
    assert_eq!(round_trip(&tls, addr, "localhost").await.unwrap(), b"pong");
}

#[tokio::test]
async fn handshake_with_another_ca_fails() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn test CA");
    let other = Ca::new("some other CA");
    let addr = serve(server_config(&ca, None)).await;
    let tls = connector(&settings(Some(&write(&dir, "other.pem", &other.cert.pem())))).unwrap();
    let err = round_trip(&tls, addr, "localhost").await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // Mozilla's roots do not trust a private CA either.
    let default = connector(&TlsSettings::default()).unwrap();
    let err = round_trip(&default, addr, "localhost").await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // Told apart from a lost connection: a security error naming the broker, not a retriable I/O error.
    match untrusted_certificate("localhost:9093", err) {
        Ok(SecurityError::UntrustedCertificate { broker, reason }) => {
            assert_eq!(broker, "localhost:9093");
            assert!(reason.contains("UnknownIssuer"), "{reason}");
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }
    let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    assert!(untrusted_certificate("localhost:9093", reset).is_err(), "other I/O errors are given back");
}

#[tokio::test]
async fn server_name_setting_overrides_the_dialled_host() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn test CA");
    let addr = serve(server_config(&ca, None)).await;
    let mut settings = settings(Some(&write(&dir, "ca.pem", &ca.cert.pem())));
    let tls = connector(&settings).unwrap();
    // The certificate names "localhost", not the IP address dialled.
    let err = round_trip(&tls, addr, "127.0.0.1").await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    settings.server_name = Some("localhost".into());
    let name = settings.server_name_for("127.0.0.1").unwrap();
    assert_eq!(name.to_str(), "localhost");
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = tls.connect(name, tcp).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"pong");
}

#[tokio::test]
async fn mutual_tls_with_client_certificate_succeeds() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn server CA");
    let client_ca = Ca::new("kfn client CA");
    let addr = serve(server_config(&ca, Some(&client_ca))).await;
    let tls = connector(&client_settings(&dir, &ca, &client_ca)).unwrap();
    assert_eq!(round_trip(&tls, addr, "localhost").await.unwrap(), b"pong");
}

#[tokio::test]
async fn mutual_tls_without_client_certificate_fails() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn server CA");
    let client_ca = Ca::new("kfn client CA");
    let addr = serve(server_config(&ca, Some(&client_ca))).await;
    let tls = connector(&settings(Some(&write(&dir, "ca.pem", &ca.cert.pem())))).unwrap();
    let err = round_trip(&tls, addr, "localhost").await.unwrap_err();
    assert!(err.to_string().contains("CertificateRequired"), "{err}");

    // A client certificate from a CA the server does not trust fails too.
    let stranger = Ca::new("untrusted client CA");
    let tls = connector(&client_settings(&dir, &ca, &stranger)).unwrap();
    assert!(round_trip(&tls, addr, "localhost").await.is_err());
}

#[tokio::test]
async fn mutual_tls_with_sec1_key_succeeds() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn CA");
    let addr = serve(server_config(&ca, Some(&ca))).await;
    let (cert, key) = ca.issue("kfn-client", ExtendedKeyUsagePurpose::ClientAuth);
    let sec1 = pem_block("EC PRIVATE KEY", &sec1_from_pkcs8(&key.serialize_der()));
    let settings = TlsSettings {
        ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        cert_file: Some(write(&dir, "client.pem", &cert.pem())),
        key_file: Some(write(&dir, "client-sec1.key", &sec1)),
        server_name: None,
    };
    let tls = connector(&settings).unwrap();
    assert_eq!(round_trip(&tls, addr, "localhost").await.unwrap(), b"pong");
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new("kfn CA");
    let (cert, key) = ca.issue("kfn-client", ExtendedKeyUsagePurpose::ClientAuth);
    let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
    let message = |settings: TlsSettings| connector_error(&settings).to_string();

    let missing = dir.path().join("nowhere.pem");
    let msg = message(settings(Some(&missing)));
    assert!(msg.starts_with(&format!("cannot read {}", missing.display())), "{msg}");

    let empty = write(&dir, "empty.pem", "");
    assert_eq!(message(settings(Some(&empty))), format!("no certificate found in {}", empty.display()));

    // A key file handed in as the CA: PEM, but no certificate in it.
    let key_file = write(&dir, "client.key", &key.serialize_pem());
    assert_eq!(message(settings(Some(&key_file))), format!("no certificate found in {}", key_file.display()));

    let broken = write(&dir, "broken.pem", "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n");
    let msg = message(settings(Some(&broken)));
    assert!(msg.starts_with(&format!("invalid PEM in {}", broken.display())), "{msg}");

    let cert_file = write(&dir, "client.pem", &cert.pem());
    let msg = message(TlsSettings {
        ca_file: Some(ca_file.clone()),
        cert_file: Some(cert_file.clone()),
        key_file: Some(cert_file.clone()),
        server_name: None,
    });
    assert!(msg.starts_with(&format!("no private key found in {}", cert_file.display())), "{msg}");

    let err = connector_error(&TlsSettings {
        ca_file: Some(ca_file.clone()),
        cert_file: Some(cert_file.clone()),
        ..TlsSettings::default()
    });
    assert!(matches!(err, SecurityError::IncompleteClientCertificate { missing: "key_file" }), "{err}");

    // A key that does not belong to the certificate.
    let other_key = write(&dir, "other.key", &KeyPair::generate().unwrap().serialize_pem());
    let msg = message(TlsSettings {
        ca_file: Some(ca_file),
        cert_file: Some(cert_file.clone()),
        key_file: Some(other_key.clone()),
        server_name: None,
    });
    assert!(msg.contains(&cert_file.display().to_string()), "{msg}");
    assert!(msg.contains(&other_key.display().to_string()), "{msg}");
}

#[test]
fn server_names_accept_dns_names_and_ip_addresses() {
    assert_eq!(server_name("broker-1.kafka.svc").unwrap().to_str(), "broker-1.kafka.svc");
    assert_eq!(server_name("10.0.0.7").unwrap().to_str(), "10.0.0.7");
    let err = server_name("not a host!").unwrap_err();
    assert!(err.to_string().starts_with("'not a host!' cannot be used"), "{err}");
}

fn connector_error(settings: &TlsSettings) -> SecurityError {
    match connector(settings) {
        Ok(_) => panic!("connector accepted {settings:?}"),
        Err(err) => err,
    }
}

/// Reads one DER TLV, returning (tag, content, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        n if n < 0x80 => (n as usize, 2),
        n => {
            let bytes = (n & 0x7f) as usize;
            let len = input[2..2 + bytes].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + bytes)
        }
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// The SEC1 ECPrivateKey inside a PKCS#8 PrivateKeyInfo.
fn sec1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der_tlv(pkcs8);
    let (_, _version, rest) = der_tlv(info);
    let (_, _algorithm, rest) = der_tlv(rest);
    let (tag, private_key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 private key is an OCTET STRING");
    private_key.to_vec()
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}
