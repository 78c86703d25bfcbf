//! An async client of the Confluent Schema Registry REST API.
//!
//! It speaks only what every Confluent-compatible registry serves (Confluent,
//! Karapace, Apicurio's `ccompat` API, Redpanda, kfn's own registry), over
//! HTTP/1.1 with hyper, plain or over TLS with basic credentials
//! ([`RegistryAccess`]). Schemas are immutable once they have an id, so the
//! client caches them by id, and ids by (subject, schema): after the first
//! call the per-record path never goes to the network. Calls are retried with
//! exponential backoff while the registry cannot be reached or answers 5xx,
//! and never on a 4xx answer, which would be the same the next time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kfn::avro::RegistryError> {
//! use kfn::avro::{value_subject, RegistryClient};
//! let registry = RegistryClient::new("http://127.0.0.1:8081", None)?;
//! let schema = r#"{"type":"record","name":"Ping","fields":[{"name":"n","type":"int"}]}"#;
//! let id = registry.register(&value_subject("pings"), schema).await?;
//! assert_eq!(registry.schema_by_id(id).await?.schema, schema);
//! # Ok(()) }
//! ```
//!
//! A certificate the client cannot verify fails the first call with
//! [`RegistryError::Tls`] (naming the host and the CA), and wrong credentials
//! with [`RegistryError::Unauthorized`] (naming the user); neither is retried.
//!
//! Not supported yet: several registry URLs in one setting, client
//! certificates (mutual TLS) and bearer tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;

use super::access::{https_connector, tls_failure};
pub use super::access::{BasicAuth, RegistryAccess};
use super::api::{
    CompatibilityCheck, ConfigAnswer, ErrorAnswer, IdAnswer, RegisteredSchema, SchemaAnswer, SchemaBody,
    SubjectVersion, Version,
};
use super::compatibility::CompatibilityLevel;
use super::error::{ApiError, ApiErrorKind, RegistryError};

/// What Confluent's own serializers send as `Accept`.
const ACCEPT_REGISTRY: &str =
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5";
/// The request body type of the Confluent API.
const CONTENT_REGISTRY: &str = "application/vnd.schemaregistry.v1+json";
/// No registry answer is legitimately larger than this; a bigger one is a misconfigured URL.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The subject of a topic's value schema under the TopicNameStrategy: `<topic>-value`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// An async Confluent Schema Registry client; cheap to clone, clones share the caches.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Base URL without a trailing slash; may carry a path (Apicurio's `/apis/ccompat/v7`).
    base: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    auth: Option<HeaderValue>,
    /// The user of `auth`, for a 401's message.
    username: Option<String>,
    /// The URL's host, for a TLS failure's message.
    host: String,
    /// What the server's certificate is checked against, for a TLS failure's message.
    trust: String,
    retry: ExponentialBuilder,
    timeout: Duration,
    by_id: RwLock<HashMap<u32, Arc<RegisteredSchema>>>,
    /// (subject, schema as compact JSON) -> id.
    ids: RwLock<HashMap<(String, String), u32>>,
    /// Serializes cache misses by id, so workers that meet a new id together fetch it once.
    fetching: tokio::sync::Mutex<()>,
    /// Calls retried since the client was built, for metrics and tests.
    retries: AtomicU64,
}

impl RegistryClient {
    /// A client of the registry at `url` (`http://host:port` or `https://host:port`,
    /// optionally with a path prefix); `https` trusts Mozilla's public roots.
    ///
    /// Retries: 100 ms doubling up to 5 s, 8 retries (about 20 s in all); requests time out after 10 s.
    pub fn new(url: &str, auth: Option<BasicAuth>) -> Result<Self, RegistryError> {
        Self::with_access(url, RegistryAccess { auth, ca_file: None })
    }

    /// A client of the registry at `url` with credentials and a CA file
    /// (`runtime.schema_registry_auth` and `runtime.schema_registry_tls`).
    ///
    /// Fails when the CA file cannot be read or holds no certificate.
    pub fn with_access(url: &str, access: RegistryAccess) -> Result<Self, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
        let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(invalid("expected http://host:port or https://host:port"));
        }
        let host = uri.host().ok_or_else(|| invalid("the URL names no host"))?.to_owned();
        let auth = match &access.auth {
            Some(basic) => {
                Some(basic.header().ok_or_else(|| invalid("the basic-auth credentials are not valid header text"))?)
            }
            None => None,
        };
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https_connector(url, &access)?);
        let retry = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(8)
            .with_jitter();
        Ok(Self {
            inner: Arc::new(Inner {
                base: url.trim_end_matches('/').to_owned(),
                http,
                auth,
                username: access.auth.as_ref().map(|a| a.username.clone()),
                host,
                trust: access.trust(),
                retry,
                timeout: Duration::from_secs(10),
                by_id: RwLock::default(),
                ids: RwLock::default(),
                fetching: tokio::sync::Mutex::new(()),
                retries: AtomicU64::new(0),
            }),
        })
    }

    /// Replaces the retry policy (before the client is cloned or used).
    pub fn with_retry(mut self, retry: ExponentialBuilder) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.retry = retry;
        }
        self
    }

    /// Replaces the per-request timeout (before the client is cloned or used).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.timeout = timeout;
        }
        self
    }

    /// How many times a call was retried since the client was built.
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// The base URL requests go to.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// Registers `schema` (Avro) under `subject` and returns its global id; a
    /// schema already registered there gets its existing id back.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), compact(schema));
        if let Some(&id) = read(&self.inner.ids).get(&key) {
            return Ok(id);
        }
        let path = format!("/subjects/{}/versions", segment(subject));
        let answer: IdAnswer = self.call(Method::POST, &path, Some(body(schema))).await?;
        tracing::debug!(subject, schema_id = answer.id, "schema registered");
        write(&self.inner.ids).insert(key, answer.id);
        Ok(answer.id)
    }

    /// The schema with this global id, from the cache or else from the registry.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(found) = self.cached_schema(id) {
            return Ok(found);
        }
        let _one_at_a_time = self.inner.fetching.lock().await;
        // Another task may have fetched it while this one waited.
        if let Some(found) = self.cached_schema(id) {
            return Ok(found);
        }
        let answer: SchemaAnswer = self.call(Method::GET, &format!("/schemas/ids/{id}"), None).await?;
        tracing::debug!(schema_id = id, schema_type = %answer.schema_type, "schema fetched");
        let schema = Arc::new(RegisteredSchema {
            id,
            schema: answer.schema,
            schema_type: answer.schema_type,
            references: answer.references,
        });
        write(&self.inner.by_id).insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    /// The schema with this id if an earlier call brought it; never goes to the network.
    pub fn cached_schema(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        read(&self.inner.by_id).get(&id).cloned()
    }

    /// One version of a subject (`latest` is never cached: it moves).
    pub async fn subject_version(&self, subject: &str, version: Version) -> Result<SubjectVersion, RegistryError> {
        let version = match version {
            Version::Latest => "latest".to_owned(),
            Version::Number(n) => n.to_string(),
        };
        let path = format!("/subjects/{}/versions/{version}", segment(subject));
        let found: SubjectVersion = self.call(Method::GET, &path, None).await?;
        self.remember(&found);
        Ok(found)
    }

    /// The newest version of a subject.
    pub async fn latest(&self, subject: &str) -> Result<SubjectVersion, RegistryError> {
        self.subject_version(subject, Version::Latest).await
    }

    /// Finds `schema` among the versions of `subject` without registering it
    /// (40403 when it is not there, 40401 when the subject is not).
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<SubjectVersion, RegistryError> {
        let key = (subject.to_owned(), compact(schema));
        let path = format!("/subjects/{}", segment(subject));
        let found: SubjectVersion = self.call(Method::POST, &path, Some(body(schema))).await?;
        write(&self.inner.ids).insert(key, found.id);
        self.remember(&found);
        Ok(found)
    }

    /// Whether `schema` could be registered as the next version of `subject`.
    pub async fn check_compatibility(&self, subject: &str, schema: &str) -> Result<CompatibilityCheck, RegistryError> {
        let path = format!("/compatibility/subjects/{}/versions/latest?verbose=true", segment(subject));
        self.call(Method::POST, &path, Some(body(schema))).await
    }

    /// The compatibility level that applies to `subject`: its own, or else the registry's.
    pub async fn subject_config(&self, subject: &str) -> Result<CompatibilityLevel, RegistryError> {
        let path = format!("/config/{}?defaultToGlobal=true", segment(subject));
        let answer: Result<ConfigAnswer, _> = self.call(Method::GET, &path, None).await;
        let answer = match answer {
            // Registries that ignore `defaultToGlobal` answer 40408 (or 40401) instead.
            Err(e)
                if matches!(
                    e.kind(),
                    Some(ApiErrorKind::SubjectCompatibilityNotConfigured | ApiErrorKind::SubjectNotFound)
                ) =>
            {
                self.call::<ConfigAnswer>(Method::GET, "/config", None).await?
            }
            other => other?,
        };
        Ok(answer.level)
    }

    fn remember(&self, found: &SubjectVersion) {
        let schema = RegisteredSchema {
            id: found.id,
            schema: found.schema.clone(),
            schema_type: found.schema_type.clone(),
            references: found.references.clone(),
        };
        write(&self.inner.by_id).entry(found.id).or_insert_with(|| Arc::new(schema));
    }

    /// One API call with retries; decodes a success answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.inner.base);
        let method_name = method_name(&method);
        let attempt = || self.attempt(&method, method_name, &url, body.clone());
        let bytes = attempt
            .retry(self.inner.retry)
            .sleep(tokio::time::sleep)
            .when(RegistryError::is_transient)
            .notify(|error, delay| {
                self.inner.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %url, error = %error, retry_in = ?delay, "schema registry call failed; retrying");
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json { method: method_name, url, source })
    }

    /// One HTTP exchange: the body of a 2xx answer, or the registry's error.
    async fn attempt(
        &self,
        method: &Method,
        name: &'static str,
        url: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, RegistryError> {
        let mut request = Request::builder().method(method.clone()).uri(url).header(ACCEPT, ACCEPT_REGISTRY);
        if body.is_some() {
            request = request.header(CONTENT_TYPE, CONTENT_REGISTRY);
        }
        if let Some(auth) = &self.inner.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| RegistryError::InvalidUrl { url: url.to_owned(), reason: e.to_string() })?;
        let exchange = async {
            let response = self.inner.http.request(request).await.map_err(|source| match tls_failure(&source) {
                Some(tls) => RegistryError::Tls {
                    url: url.to_owned(),
                    host: self.inner.host.clone(),
                    trust: self.inner.trust.clone(),
                    source: Box::new(tls),
                },
                None => RegistryError::Unreachable { method: name, url: url.to_owned(), source },
            })?;
            let status = response.status();
            let collected = Limited::new(response.into_body(), MAX_BODY).collect().await;
            let bytes = collected.map_err(|e| RegistryError::Body {
                method: name,
                url: url.to_owned(),
                message: e.to_string(),
            })?;
            Ok::<_, RegistryError>((status, bytes.to_bytes()))
        };
        let (status, bytes) = tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| RegistryError::Timeout { method: name, url: url.to_owned(), timeout: self.inner.timeout })??;
        if status.is_success() {
            return Ok(bytes);
        }
        if status == hyper::StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                method: name,
                url: url.to_owned(),
                username: self.inner.username.clone(),
                error: api_error(status.as_u16(), &bytes),
            });
        }
        Err(RegistryError::Api { method: name, url: url.to_owned(), error: api_error(status.as_u16(), &bytes) })
    }
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").field("url", &self.inner.base).finish_non_exhaustive()
    }
}

/// Reads Confluent's `{"error_code": …, "message": …}`, tolerating bodies that are not.
pub(crate) fn api_error(status: u16, body: &[u8]) -> ApiError {
    let parsed: Option<ErrorAnswer> = serde_json::from_slice(body).ok();
    let (code, message) = parsed.map(|p| (p.error_code, p.message)).unwrap_or_default();
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        text.chars().take(200).collect()
    });
    ApiError { status, error_code: code.unwrap_or(i32::from(status)), message }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "GET",
    }
}

fn body(schema: &str) -> Bytes {
    // Serializing a struct of one &str cannot fail.
    Bytes::from(serde_json::to_vec(&SchemaBody { schema }).unwrap_or_default())
}

/// The schema as compact JSON, so whitespace does not split the (subject, schema) cache.
fn compact(schema: &str) -> String {
    serde_json::from_str::<serde_json::Value>(schema).map(|v| v.to_string()).unwrap_or_else(|_| schema.to_owned())
}

/// Percent-encodes a subject for use as one path segment (subjects may hold `/` or spaces).
pub(crate) fn segment(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn read<K, V>(lock: &RwLock<HashMap<K, V>>) -> std::sync::RwLockReadGuard<'_, HashMap<K, V>> {
    // A panic while holding the lock cannot leave a map half-written: every write is one insert.
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<K, V>(lock: &RwLock<HashMap<K, V>>) -> std::sync::RwLockWriteGuard<'_, HashMap<K, V>> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
