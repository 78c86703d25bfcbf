//! One connection to one broker: framing, pipelining, version negotiation,
//! and the SASL/TLS handshake.
//!
//! Requests are kafka-protocol messages; the version of each is the highest
//! both kfn and the broker support, from the broker's ApiVersions answer
//! (Apache Kafka 4 removed old versions, KIP-896, so nothing is hard-coded).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::error::KafkaError;
use super::security::{self, SaslCredentials, SaslExchange, Step};

/// Largest response frame accepted (a guard against garbage lengths).
const MAX_FRAME: usize = 256 << 20;

/// How to open and use connections.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The client id sent with every request.
    pub client_id: String,
    /// TLS, when the security protocol uses it.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// The name to verify in the broker's certificate instead of its host.
    pub tls_server_name: Option<String>,
    /// SASL credentials, when the security protocol uses SASL.
    pub sasl: Option<SaslCredentials>,
    /// Time allowed to open a connection, handshakes included.
    pub connect_timeout: Duration,
    /// Time allowed for one request (a fetch adds its own max wait).
    pub request_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            client_id: "kfn".into(),
            tls: None,
            tls_server_name: None,
            sasl: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Bytes>>>>;

/// A connection to one broker. Cheap to clone; requests are pipelined.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    broker: String,
    writer: tokio::sync::Mutex<WriteHalf<Box<dyn Stream>>>,
    pending: Pending,
    next_id: AtomicI32,
    closed: Arc<AtomicBool>,
    versions: HashMap<i16, (i16, i16)>,
    client_id: StrBytes,
    request_timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
}

/// A connection that does not keep it open: to count the live ones.
#[derive(Clone)]
pub struct WeakConnection(std::sync::Weak<Inner>);

impl WeakConnection {
    /// Whether the connection is still held by someone and open.
    pub fn is_live(&self) -> bool {
        self.0.upgrade().is_some_and(|inner| !inner.closed.load(Ordering::Acquire))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("broker", &self.inner.broker).finish()
    }
}

/// The name of an API, for errors.
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(k) => api_key_name(k),
        Err(_) => "Unknown",
    }
}

fn api_key_name(key: ApiKey) -> &'static str {
    // Debug names of ApiKey are the request names without the suffix.
    macro_rules! names {
        ($($k:ident),*) => { match key { $(ApiKey::$k => stringify!($k),)* _ => "Other" } };
    }
    names!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        SaslHandshake,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        SaslAuthenticate,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster
    )
}

impl Connection {
    /// Opens a connection to `broker` (host:port), negotiates versions and authenticates.
    pub async fn connect(broker: &str, opts: &ConnectOptions) -> Result<Self, KafkaError> {
        match tokio::time::timeout(opts.connect_timeout, Self::connect_inner(broker, opts)).await {
            Ok(result) => result,
            Err(_) => Err(KafkaError::Timeout {
                broker: broker.to_string(),
                api: "connect",
                timeout_ms: opts.connect_timeout.as_millis(),
            }),
        }
    }

    async fn connect_inner(broker: &str, opts: &ConnectOptions) -> Result<Self, KafkaError> {
        let connect_err = |source| KafkaError::Connect { broker: broker.to_string(), source };
        let tcp = TcpStream::connect(broker).await.map_err(connect_err)?;
        tcp.set_nodelay(true).map_err(connect_err)?;
        let stream: Box<dyn Stream> = match &opts.tls {
            None => Box::new(tcp),
            Some(connector) => {
                let host = opts
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| broker.rsplit_once(':').map(|(h, _)| h).unwrap_or(broker).to_string());
                let name = security::server_name(&host)?;
                let tls = connector.connect(name, tcp).await.map_err(|e| {
                    match security::untrusted_certificate(broker, e) {
                        Ok(untrusted) => KafkaError::Security(untrusted),
                        Err(e) => connect_err(e),
                    }
                })?;
                Box::new(tls)
            }
        };
        let (read, write) = tokio::io::split(stream);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_loop(read, pending.clone(), closed.clone()));
        let mut inner = Inner {
            broker: broker.to_string(),
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_id: AtomicI32::new(1),
            closed,
            versions: HashMap::new(),
            client_id: StrBytes::from_string(opts.client_id.clone()),
            request_timeout: opts.request_timeout,
            reader,
        };
        inner.versions = negotiate(&inner).await?;
        let conn = Connection { inner: Arc::new(inner) };
        if let Some(sasl) = &opts.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// A handle that does not keep the connection open.
    pub fn downgrade(&self) -> WeakConnection {
        WeakConnection(Arc::downgrade(&self.inner))
    }

    /// The broker this connection goes to.
    pub fn broker(&self) -> &str {
        &self.inner.broker
    }

    /// Whether the connection has failed and must be replaced.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The version of `R` to use: the highest both sides support.
    pub fn version<R: Request>(&self) -> Result<i16, KafkaError> {
        pick_version::<R>(&self.inner.versions, &self.inner.broker)
    }

    /// The version of `R` to use, never above `cap` (for versions kfn does not speak yet).
    pub fn version_capped<R: Request>(&self, cap: i16) -> Result<i16, KafkaError> {
        let version = self.version::<R>()?;
        let min = self.inner.versions.get(&R::KEY).map(|v| v.0).unwrap_or(0).max(R::VERSIONS.min);
        if cap < min {
            return Err(KafkaError::NoCommonVersion {
                broker: self.inner.broker.clone(),
                api: api_name(R::KEY),
                broker_min: min,
                broker_max: version,
                ours_min: R::VERSIONS.min,
                ours_max: cap,
            });
        }
        Ok(version.min(cap))
    }

    /// The broker's version range of an API, if it has it.
    pub fn broker_versions(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.inner.versions.get(&(key as i16)).copied()
    }

    /// Sends a request at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response, KafkaError> {
        let version = self.version::<R>()?;
        self.send_version(request, version, Duration::ZERO).await
    }

    /// Sends a request at `version`, allowing `extra` time beyond the request timeout (long polls).
    pub async fn send_version<R: Request>(
        &self,
        request: &R,
        version: i16,
        extra: Duration,
    ) -> Result<R::Response, KafkaError> {
        self.send_decoded(request, version, extra, R::Response::decode).await
    }

    /// Like [`Connection::send_version`], with the response body read by
    /// `decode` instead of kafka-protocol's decoder (the Fetch response's own,
    /// [`crate::fetch::response`], bounds its arrays).
    pub async fn send_decoded<R: Request, T>(
        &self,
        request: &R,
        version: i16,
        extra: Duration,
        decode: impl FnOnce(&mut Bytes, i16) -> anyhow::Result<T>,
    ) -> Result<T, KafkaError> {
        let timeout = self.inner.request_timeout + extra;
        match tokio::time::timeout(timeout, send_raw_with(&self.inner, request, version, decode)).await {
            Ok(result) => result,
            Err(_) => Err(KafkaError::Timeout {
                broker: self.inner.broker.clone(),
                api: api_name(R::KEY),
                timeout_ms: timeout.as_millis(),
            }),
        }
    }

    async fn authenticate(&self, creds: &SaslCredentials) -> Result<(), KafkaError> {
        let mechanism = creds.mechanism.as_str();
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let response = self.send(&handshake).await?;
        if response.error_code != 0 {
            let offered: Vec<_> = response.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(KafkaError::AuthenticationFailed {
                mechanism: mechanism.into(),
                username: creds.username.clone(),
                reason: format!("the broker does not offer {mechanism} (it offers: {})", offered.join(", ")),
            });
        }
        let mut exchange = SaslExchange::new(creds)?;
        let mut message = exchange.initial()?;
        loop {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
            let response = self.send(&request).await?;
            if response.error_code != 0 {
                return Err(KafkaError::AuthenticationFailed {
                    mechanism: mechanism.into(),
                    username: creds.username.clone(),
                    reason: response
                        .error_message
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| super::error::describe(response.error_code)),
                });
            }
            match exchange.step(&response.auth_bytes)? {
                Step::Send(next) => message = next,
                Step::Done => return Ok(()),
            }
        }
    }
}

fn pick_version<R: Request>(versions: &HashMap<i16, (i16, i16)>, broker: &str) -> Result<i16, KafkaError> {
    let api = api_name(R::KEY);
    let Some(&(broker_min, broker_max)) = versions.get(&R::KEY) else {
        return Err(KafkaError::UnsupportedApi { broker: broker.to_string(), api });
    };
    let ours = R::VERSIONS;
    let version = broker_max.min(ours.max);
    if version < broker_min.max(ours.min) {
        return Err(KafkaError::NoCommonVersion {
            broker: broker.to_string(),
            api,
            broker_min,
            broker_max,
            ours_min: ours.min,
            ours_max: ours.max,
        });
    }
    Ok(version)
}

async fn negotiate(inner: &Inner) -> Result<HashMap<i16, (i16, i16)>, KafkaError> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kfn"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let mut response = send_raw::<ApiVersionsRequest>(inner, &request, 3).await?;
    if ResponseError::try_from_code(response.error_code) == Some(ResponseError::UnsupportedVersion) {
        // UNSUPPORTED_VERSION: the broker answered in v0 with its own range; ask again at v0.
        response = send_raw::<ApiVersionsRequest>(inner, &ApiVersionsRequest::default(), 0).await?;
    }
    KafkaError::check("ApiVersions", response.error_code, || inner.broker.clone())?;
    Ok(response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect())
}

async fn send_raw<R: Request>(inner: &Inner, request: &R, version: i16) -> Result<R::Response, KafkaError> {
    send_raw_with(inner, request, version, R::Response::decode).await
}

/// Sends `request` and reads the answer's body with `decode`.
async fn send_raw_with<R: Request, T>(
    inner: &Inner,
    request: &R,
    version: i16,
    decode: impl FnOnce(&mut Bytes, i16) -> anyhow::Result<T>,
) -> Result<T, KafkaError> {
    let api = api_name(R::KEY);
    let codec = |e: anyhow::Error| KafkaError::Codec { api, message: e.to_string() };
    let disconnected = |reason: String| KafkaError::Disconnected { broker: inner.broker.clone(), reason };
    if inner.closed.load(Ordering::Acquire) {
        return Err(disconnected("the connection was closed earlier".into()));
    }
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(inner.client_id.clone()));
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version).map_err(codec)? + request.compute_size(version).map_err(codec)?;
    let mut buf = BytesMut::with_capacity(size + 4);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(codec)?;
    request.encode(&mut buf, version).map_err(codec)?;

    let (tx, rx) = oneshot::channel();
    lock(&inner.pending).insert(id, tx);
    let written = {
        let mut writer = inner.writer.lock().await;
        match writer.write_all(&buf).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        }
    };
    if let Err(e) = written {
        lock(&inner.pending).remove(&id);
        inner.closed.store(true, Ordering::Release);
        return Err(disconnected(e.to_string()));
    }
    let mut frame = match rx.await {
        Ok(frame) => frame,
        Err(_) => return Err(disconnected("the broker closed the connection".into())),
    };
    let response_header_version = R::Response::header_version(version);
    ResponseHeader::decode(&mut frame, response_header_version).map_err(codec)?;
    decode(&mut frame, version).map_err(codec)
}

/// Opens a connection to a broker by address: what a broker's fetcher needs
/// of the cluster (which also keeps track of the connections it opened), so
/// that the fetch layer does not depend on the cluster that owns it.
pub trait Dial: Send + Sync + 'static {
    /// Connects to `addr` (host:port), negotiated and authenticated.
    fn dial<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<Connection, KafkaError>>;
}

/// Hands each response frame to the request waiting for its correlation id.
async fn read_loop(mut read: ReadHalf<Box<dyn Stream>>, pending: Pending, closed: Arc<AtomicBool>) {
    loop {
        let len = match read.read_i32().await {
            Ok(len) if len >= 4 && (len as usize) <= MAX_FRAME => len as usize,
            Ok(len) => {
                tracing::warn!(len, "broker sent an invalid frame length; closing the connection");
                break;
            }
            Err(_) => break,
        };
        let mut frame = BytesMut::zeroed(len);
        if read.read_exact(&mut frame).await.is_err() {
            break;
        }
        let frame = frame.freeze();
        let id = (&frame[..4]).get_i32();
        if let Some(tx) = lock(&pending).remove(&id) {
            let _ = tx.send(frame);
        }
    }
    closed.store(true, Ordering::Release);
    // Dropping the senders wakes every waiting request with a disconnect.
    lock(&pending).clear();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
