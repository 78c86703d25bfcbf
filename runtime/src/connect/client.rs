//! A client of Kafka Connect's REST API: the few calls kfn makes to apply
//! connectors and watch them run.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Map, Value};

/// No Connect answer is legitimately larger than this (a status carries stack traces).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// How long one request may take: Connect forwards writes to its leader, which can be slow to start.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a call to Kafka Connect failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not `http://host:port`.
    #[error("Kafka Connect URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker could not be reached.
    #[error("Kafka Connect at {url}: {source}")]
    Unreachable {
        /// The request's URL.
        url: String,
        /// The cause.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The request took longer than [`REQUEST_TIMEOUT`].
    #[error("Kafka Connect at {url} did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The request's URL.
        url: String,
    },
    /// The answer could not be read.
    #[error("Kafka Connect at {url}: reading the answer: {reason}")]
    Body {
        /// The request's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Connect refused the request; `message` is its own error text (e.g. every invalid field of a config).
    #[error("Kafka Connect refused {what} ({status}): {message}")]
    Refused {
        /// The request, e.g. `the config of connector shop-products`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// Connect's `message`, or the body when it has none.
        message: String,
    },
    /// A connector or one of its tasks failed.
    #[error("connector {connector}: {what} FAILED: {trace}")]
    Failed {
        /// The connector.
        connector: String,
        /// `the connector` or `task N`.
        what: String,
        /// The first lines of Connect's trace (the exception and its causes).
        trace: String,
    },
    /// A connector did not reach RUNNING in time.
    #[error("connector {connector} is not running after {} s (last state: {state})", waited.as_secs())]
    NotRunning {
        /// The connector.
        connector: String,
        /// How long kfn waited.
        waited: Duration,
        /// Its last state, with its tasks'.
        state: String,
    },
}

/// The state of a connector and its tasks (`GET /connectors/<name>/status`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorStatus {
    /// The connector's name.
    pub name: String,
    /// The connector itself.
    pub connector: State,
    /// Its tasks.
    pub tasks: Vec<TaskState>,
}

/// The state of a connector: RUNNING, PAUSED, STOPPED, FAILED, UNASSIGNED or RESTARTING.
#[derive(Debug, Clone, Deserialize)]
pub struct State {
    /// The state.
    pub state: String,
    /// Why it failed, when it did.
    pub trace: Option<String>,
}

/// The state of one task.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskState {
    /// The task's number.
    pub id: u32,
    /// Its state.
    pub state: String,
    /// Why it failed, when it did.
    pub trace: Option<String>,
}

impl ConnectorStatus {
    /// Whether the connector and at least one task (all of them) are RUNNING.
    pub fn running(&self) -> bool {
        self.connector.state == "RUNNING" && !self.tasks.is_empty() && self.tasks.iter().all(|t| t.state == "RUNNING")
    }

    /// The first failure of the connector or a task, as an error.
    pub fn failure(&self) -> Option<ConnectError> {
        let failed = |what: String, trace: &Option<String>| ConnectError::Failed {
            connector: self.name.clone(),
            what,
            trace: short_trace(trace.as_deref().unwrap_or("(no trace)")),
        };
        if self.connector.state == "FAILED" {
            return Some(failed("the connector".into(), &self.connector.trace));
        }
        self.tasks.iter().find(|t| t.state == "FAILED").map(|t| failed(format!("task {}", t.id), &t.trace))
    }

    /// `RUNNING (tasks: 0 RUNNING)`, for progress lines.
    pub fn summary(&self) -> String {
        let tasks: Vec<String> = self.tasks.iter().map(|t| format!("{} {}", t.id, t.state)).collect();
        format!(
            "{} (tasks: {})",
            self.connector.state,
            if tasks.is_empty() { "none yet".into() } else { tasks.join(", ") }
        )
    }
}

/// The exception of a Java trace and its causes, without the stack frames.
fn short_trace(trace: &str) -> String {
    let mut lines = trace.lines().filter(|l| !l.trim_start().starts_with("at ") && !l.trim_start().starts_with("..."));
    let first = lines.next().unwrap_or_default().to_string();
    lines.filter(|l| l.starts_with("Caused by:")).fold(first, |acc, l| format!("{acc}\n  {l}"))
}

/// Whether PUT created the connector or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist.
    Created,
    /// It existed; its config was replaced (Connect restarts its tasks).
    Updated,
}

/// A Kafka Connect worker's REST API (any worker of the cluster: writes are forwarded to the leader).
#[derive(Clone)]
pub struct ConnectClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl ConnectClient {
    /// A client of the worker at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let invalid = |reason: &str| ConnectError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
        let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("expected http://host:port (https is not supported yet)"));
        }
        if uri.host().is_none() {
            return Err(invalid("the URL names no host"));
        }
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { base: url.trim_end_matches('/').to_owned(), http })
    }

    /// The worker's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET /`: the worker's version, once its REST API answers.
    pub async fn version(&self) -> Result<String, ConnectError> {
        let (_, body) = self.call(Method::GET, "/", None, "the worker's version").await?;
        Ok(body.get("version").and_then(Value::as_str).unwrap_or("unknown").to_string())
    }

    /// `PUT /connectors/<name>/config`: creates or replaces a connector. An
    /// invalid config is refused with Connect's own list of errors.
    pub async fn put_config(&self, name: &str, config: &Map<String, Value>) -> Result<Applied, ConnectError> {
        let body = Value::Object(config.clone());
        let path = format!("/connectors/{name}/config");
        let (status, _) = self.call(Method::PUT, &path, Some(body), &format!("the config of connector {name}")).await?;
        Ok(if status == StatusCode::CREATED { Applied::Created } else { Applied::Updated })
    }

    /// `GET /connectors/<name>/status`.
    pub async fn status(&self, name: &str) -> Result<ConnectorStatus, ConnectError> {
        let path = format!("/connectors/{name}/status");
        let (_, body) = self.call(Method::GET, &path, None, &format!("the status of connector {name}")).await?;
        serde_json::from_value(body)
            .map_err(|e| ConnectError::Body { url: format!("{}{path}", self.base), reason: e.to_string() })
    }

    /// `GET /connectors`: the connectors' names.
    pub async fn connectors(&self) -> Result<Vec<String>, ConnectError> {
        let (_, body) = self.call(Method::GET, "/connectors", None, "the list of connectors").await?;
        serde_json::from_value(body)
            .map_err(|e| ConnectError::Body { url: format!("{}/connectors", self.base), reason: e.to_string() })
    }

    /// Waits until the connector and its tasks are RUNNING; fails at once
    /// with Connect's trace when one FAILED. `progress` sees each new state.
    pub async fn wait_running(
        &self,
        name: &str,
        limit: Duration,
        mut progress: impl FnMut(&ConnectorStatus),
    ) -> Result<ConnectorStatus, ConnectError> {
        let start = Instant::now();
        let mut pauses = crate::backoff::Pauses::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut last = String::from("unknown");
        loop {
            // A connector just created has no status for a moment (404): keep asking.
            match self.status(name).await {
                Ok(status) => {
                    if let Some(failure) = status.failure() {
                        return Err(failure);
                    }
                    let summary = status.summary();
                    if summary != last {
                        progress(&status);
                        last = summary;
                    }
                    if status.running() {
                        return Ok(status);
                    }
                }
                Err(ConnectError::Refused { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() > limit {
                return Err(ConnectError::NotRunning { connector: name.to_string(), waited: limit, state: last });
            }
            pauses.pause().await;
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<(StatusCode, Value), ConnectError> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| ConnectError::InvalidUrl { url: url.clone(), reason: e.to_string() })?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| ConnectError::Timeout { url: url.clone() })?
            .map_err(|source| ConnectError::Unreachable { url: url.clone(), source })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| ConnectError::Body { url: url.clone(), reason: e.to_string() })?
            .to_bytes();
        let value: Value =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(ConnectError::Refused { what: what.to_string(), status: status.as_u16(), message });
        }
        Ok((status, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_is_cut_to_its_exceptions() {
        let trace = "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask\n\tat a.b(C.java:1)\n\
                     Caused by: java.lang.ClassCastException: String cannot be cast to Struct\n\tat d.e(F.java:2)\n\t... 3 more";
        assert_eq!(
            short_trace(trace),
            "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask\n  \
             Caused by: java.lang.ClassCastException: String cannot be cast to Struct"
        );
    }

    #[test]
    fn a_failed_task_is_the_failure_and_running_needs_every_task() {
        let status: ConnectorStatus = serde_json::from_str(
            r#"{"name":"c","connector":{"state":"RUNNING"},"tasks":[
                {"id":0,"state":"RUNNING"},{"id":1,"state":"FAILED","trace":"java.lang.Boom: no\n\tat x"}]}"#,
        )
        .unwrap();
        assert!(!status.running());
        let err = status.failure().unwrap().to_string();
        assert!(err.contains("task 1 FAILED: java.lang.Boom: no"), "{err}");
        let none: ConnectorStatus =
            serde_json::from_str(r#"{"name":"c","connector":{"state":"RUNNING"},"tasks":[]}"#).unwrap();
        assert!(!none.running(), "a connector without tasks yet is not running");
        assert!(none.failure().is_none());
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert!(ConnectClient::new("http://127.0.0.1:8083/").is_ok());
        assert!(matches!(ConnectClient::new("https://connect:8083"), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(ConnectClient::new("connect:8083"), Err(ConnectError::InvalidUrl { .. })));
    }
}
