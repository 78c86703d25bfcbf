//! The HTTP trigger: routes requests to HTTP handlers, produces what they
//! emit with the idempotent producer, and answers only after the broker
//! acknowledged the write (503 when it could not).
//!
//! An `Idempotency-Key` header makes a retried request get the first
//! answer again without running the handler (or producing) a second time,
//! from any replica: the answers are remembered in the function's
//! `<function>.idempotency` topic, written in one transaction with the
//! request's events ([`super::idempotency`]). Concurrent requests with one
//! key on one replica share one handler call (kept in memory for 24 hours).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::Request;
use kfn_sdk::{ErasedHttp, HttpReply, HttpRequest};

use crate::invoker::invoke::{http_stack, HttpCall, HttpInput, Stack};
use tokio::net::TcpListener;
use tokio::sync::{watch, OnceCell};

use super::idempotency::{self, IdempotencyLog};
use super::server::{self, HttpResponse};
use super::stall::Stalls;
use crate::invoker::outputs::{EncodeBuffers, Outputs, Target};
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{Producer, ProducerRecord};
use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::trace::{TraceParent, TRACEPARENT};

/// How long an idempotency key is remembered.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many idempotency keys are remembered at most.
const IDEMPOTENCY_CAPACITY: usize = 100_000;

/// One route of the trigger.
pub struct Route {
    /// The method, upper case.
    pub method: String,
    /// The path pattern, with `{name}` segments.
    pub path: String,
    /// The function's name.
    pub function: String,
    /// The handler.
    pub handler: ErasedHttp,
    /// Where its events go.
    pub outputs: Outputs,
    /// Whether the route is an HTTP function of functions.toml (its calls go
    /// through the function's observe layer: its metrics, slow-call log and
    /// panic count) rather than an aggregate's pull query.
    pub observed: bool,
    /// The function's own producer (its own principal, `[security]
    /// per_function`); None: the trigger's shared one.
    pub producer: Option<Producer>,
}

/// A route with the layer stack its handler runs in.
struct Served {
    route: Route,
    stack: Arc<Stack<HttpCall>>,
}

type Answer = (u16, String);

/// Where a keyed request's answer goes: its function's log, under its key,
/// written no later than [`idempotency::ANSWER_DEADLINE`] after it `arrived`.
struct Remember<'a> {
    log: &'a IdempotencyLog,
    key: &'a str,
    arrived: Instant,
}

#[derive(Default)]
struct IdempotencyKeys {
    answers: HashMap<String, (Instant, Arc<OnceCell<Answer>>)>,
    order: VecDeque<String>,
}

impl IdempotencyKeys {
    fn cell(&mut self, key: &str) -> Arc<OnceCell<Answer>> {
        let now = Instant::now();
        while let Some(oldest) = self.order.front() {
            let expired = self.answers.get(oldest).is_none_or(|(at, _)| now.duration_since(*at) > IDEMPOTENCY_TTL);
            if !expired && self.order.len() <= IDEMPOTENCY_CAPACITY {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
            }
        }
        if let Some((_, cell)) = self.answers.get(key) {
            return cell.clone();
        }
        let cell = Arc::new(OnceCell::new());
        self.answers.insert(key.to_string(), (now, cell.clone()));
        self.order.push_back(key.to_string());
        cell
    }
}

/// The HTTP trigger of one process.
pub struct HttpTrigger {
    routes: Vec<Served>,
    producer: Producer,
    metrics: Metrics,
    max_body: u64,
    keys: Mutex<IdempotencyKeys>,
    /// The Idempotency-Keys of each HTTP function, in Kafka, by function name.
    idempotency: HashMap<String, Arc<IdempotencyLog>>,
    /// The OpenAPI document served at `GET /openapi.json`, when configured.
    openapi: Option<Arc<str>>,
    /// This process's stalls: a keyed request found after one counts from before it.
    stalls: Stalls,
}

impl HttpTrigger {
    /// A trigger serving `routes`, producing with `producer`; a handler call
    /// slower than `slow` is logged.
    ///
    /// Each handler runs in the invoker's layer stack, as topic handlers do:
    /// panics caught, and for HTTP functions their metrics observed. A pull
    /// query's calls are not counted as its aggregate's handler calls.
    pub fn new(routes: Vec<Route>, producer: Producer, metrics: Metrics, max_body: u64, slow: Duration) -> Self {
        let unobserved = Metrics::new();
        let routes = routes
            .into_iter()
            .map(|route| {
                let observer = if route.observed { &metrics } else { &unobserved };
                let stack = http_stack(route.handler.clone(), observer.function(&route.function), slow);
                Served { route, stack }
            })
            .collect();
        Self {
            routes,
            producer,
            metrics,
            max_body,
            keys: Mutex::default(),
            idempotency: HashMap::new(),
            openapi: None,
            stalls: Stalls::default(),
        }
    }

    /// Remembers the answers of keyed requests in Kafka: `logs` by function name.
    /// A function without one remembers its keys in this process only.
    pub fn with_idempotency(self, logs: HashMap<String, Arc<IdempotencyLog>>) -> Self {
        Self { idempotency: logs, ..self }
    }

    /// Serves `document` (JSON) at `GET /openapi.json`.
    pub fn with_openapi(self, document: &str) -> Self {
        Self { openapi: Some(Arc::from(document)), ..self }
    }

    /// Serves until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        tokio::spawn(self.stalls.clone().watch(shutdown.clone()));
        let handler = Arc::new(move |req: Request<Incoming>| {
            let this = self.clone();
            async move { this.handle(req).await }
        });
        server::serve(listener, handler, shutdown).await;
    }

    async fn handle(&self, req: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        if let (Some(document), "GET", "/openapi.json") = (&self.openapi, method.as_str(), path.as_str()) {
            self.count("GET /openapi.json", 200);
            return server::json(200, document.to_string());
        }
        let (served, params) = match self.find(&method, &path) {
            Ok(found) => found,
            Err(status) => {
                let message = if status == 405 { "method not allowed on this path" } else { "no route for this path" };
                self.count("unmatched", status);
                return server::json(status, serde_json::json!({ "error": message, "path": path }).to_string());
            }
        };
        let route = &served.route;
        let label = format!("{} {}", route.method, route.path);
        let idempotency_key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
        let headers: HashMap<String, String> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_string())))
            .collect();
        let body = match Limited::new(req.into_body(), self.max_body as usize).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                self.count(&label, 413);
                let message = format!("the body is larger than {} bytes", self.max_body);
                return server::json(413, serde_json::json!({ "error": message }).to_string());
            }
        };
        // The request's trace continues on every event it produces (a new one when it has none);
        // `trace.parent_id` is this request's span id (crate::otel).
        let incoming = headers.get(TRACEPARENT).and_then(|t| TraceParent::parse(t));
        let trace = incoming.map_or_else(TraceParent::root, |t| t.child());
        let span_start = std::time::SystemTime::now();
        let request = HttpRequest { method, path, params, headers, body };
        let (status, body) = match idempotency_key {
            Some(key) => {
                let cell = self.keys.lock().unwrap_or_else(|p| p.into_inner()).cell(&format!("{label}\n{key}"));
                // Only answers that produced (or rejected the input) are remembered; a 503 may be retried.
                // Seen after a stall of this process, the request may have arrived long before.
                let arrived = self.stalls.arrival(started.into()).into_std();
                match cell.get_or_try_init(|| self.invoke_keyed(served, request, &key, trace, arrived)).await {
                    Ok(answer) => answer.clone(),
                    Err(answer) => answer,
                }
            }
            None => match self.invoke(served, request, None, trace).await {
                Ok(answer) | Err(answer) => answer,
            },
        };
        self.count(&label, status);
        crate::otel::record(|| request_span(&label, &route.function, trace, incoming, span_start, status));
        self.metrics
            .http_duration
            .get_or_create(&RouteLabels { route: label })
            .observe(started.elapsed().as_secs_f64());
        server::json(status, body)
    }

    /// The answer any replica gave to `key`, or the handler's, remembered
    /// with its events in one transaction (unless they reach the log too long
    /// after the request `arrived`). `Err` is an answer not to remember.
    async fn invoke_keyed(
        &self,
        served: &Served,
        request: HttpRequest,
        key: &str,
        trace: TraceParent,
        arrived: Instant,
    ) -> Result<Answer, Answer> {
        let Some(log) = self.idempotency.get(&served.route.function) else {
            return self.invoke(served, request, None, trace).await;
        };
        match log.remembered(key).await {
            Ok(Some(answer)) => Ok((answer.status, answer.body)),
            Ok(None) => self.invoke(served, request, Some(Remember { log, key, arrived }), trace).await,
            Err(e) => {
                tracing::warn!(function = %served.route.function, error = %e, "cannot look the Idempotency-Key up");
                Err((503, serde_json::json!({ "error": e.to_string() }).to_string()))
            }
        }
    }

    /// Runs the handler and produces its events; with `remember`, in one
    /// transaction with the answer under its key. `Err` is an answer not to remember (503, 500).
    async fn invoke(
        &self,
        served: &Served,
        request: HttpRequest,
        remember: Option<Remember<'_>>,
        trace: TraceParent,
    ) -> Result<Answer, Answer> {
        let route = &served.route;
        let input = HttpInput::new(Arc::from(route.function.as_str()), request);
        // The body travels in the request: no value to pass down the stack.
        let reply: HttpReply = match served.stack.run(input, &[]).await {
            Ok(reply) => reply,
            // The observe layer logged and counted a panic; nothing else fails here.
            Err(_) => return Err((500, serde_json::json!({ "error": "the handler failed" }).to_string())),
        };
        let now = kfn_sdk::now_ms();
        let mut by_tp: BTreeMap<Target, Vec<ProducerRecord>> = BTreeMap::new();
        let mut buffers = EncodeBuffers::default();
        for emitted in &reply.emit.events {
            match route.outputs.route(emitted, None, now, &mut buffers) {
                Ok((tp, record)) => {
                    let traced = record.headers.iter().any(|h| h.name == TRACEPARENT);
                    let record =
                        if traced { record } else { record.with_header(TRACEPARENT, Some(trace.to_header().into())) };
                    by_tp.entry(tp).or_default().push(record)
                }
                Err(e) => {
                    tracing::error!(function = %route.function, error = %e, "cannot route the handler's event");
                    return Err((500, serde_json::json!({ "error": e.to_string() }).to_string()));
                }
            }
        }
        if let Some(Remember { log, key, arrived }) = remember {
            let records =
                by_tp.into_iter().map(|((topic, p), records)| (TopicPartition::new(topic.to_string(), p), records));
            let answer = idempotency::Answer { status: reply.status, body: reply.body };
            return match log.commit(key, answer.clone(), records.collect(), arrived).await {
                Ok(()) => Ok((answer.status, answer.body)),
                Err(e) => {
                    tracing::warn!(function = %route.function, error = %e, "the request's events and answer were not stored");
                    Err((
                        503,
                        serde_json::json!({ "error": format!("the event could not be stored: {e}") }).to_string(),
                    ))
                }
            };
        }
        if by_tp.is_empty() {
            return Ok((reply.status, reply.body));
        }
        let producer = route.producer.as_ref().unwrap_or(&self.producer);
        let batches = by_tp
            .into_iter()
            .map(|((topic, partition), records)| (TopicPartition::new(topic.to_string(), partition), records));
        match producer.send_each(batches).await {
            Ok(()) => Ok((reply.status, reply.body)),
            Err(e) => {
                tracing::warn!(function = %route.function, error = %e, "producing the request's events failed");
                Err((503, serde_json::json!({ "error": format!("the event could not be stored: {e}") }).to_string()))
            }
        }
    }

    fn find(&self, method: &str, path: &str) -> Result<(&Served, HashMap<String, String>), u16> {
        let mut path_matched = false;
        for served in &self.routes {
            let route = &served.route;
            if let Some(params) = match_path(&route.path, path) {
                if route.method == method {
                    return Ok((served, params));
                }
                path_matched = true;
            }
        }
        Err(if path_matched { 405 } else { 404 })
    }

    fn count(&self, route: &str, status: u16) {
        self.metrics
            .http_requests
            .get_or_create(&HttpLabels { route: route.to_string(), status: status.to_string() })
            .inc();
    }
}

/// The span of one request of `route` (`METHOD /path`): its id is the parent
/// id of the `traceparent` its events carry; its parent, the caller's span.
fn request_span(
    route: &str,
    function: &str,
    trace: TraceParent,
    incoming: Option<TraceParent>,
    start: std::time::SystemTime,
    status: u16,
) -> crate::otel::Span {
    let mut span = crate::otel::Span::new(route, crate::otel::Kind::Server, trace, incoming.map(|t| t.parent_id));
    span.start = start;
    let (method, path) = route.split_once(' ').unwrap_or((route, ""));
    span = span
        .attr("kfn.function", function)
        .attr("http.request.method", method)
        .attr("http.route", path)
        .attr("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.error = Some(format!("answered {status}"));
    }
    span
}

/// Matches `/orders/{id}` against `/orders/42`, returning `{id: 42}`.
pub fn match_path(pattern: &str, path: &str) -> Option<HashMap<String, String>> {
    let pattern: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if pattern.len() != path.len() {
        return None;
    }
    let mut params = HashMap::new();
    for (p, s) in pattern.iter().zip(path) {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if s.is_empty() {
                return None;
            }
            params.insert(name.to_string(), s.to_string());
        } else if p != &s {
            return None;
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_parameters() {
        assert_eq!(match_path("/orders", "/orders"), Some(HashMap::new()));
        assert_eq!(match_path("/orders", "/orders/"), Some(HashMap::new()));
        let params = match_path("/orders/{id}", "/orders/42").expect("match");
        assert_eq!(params.get("id").map(String::as_str), Some("42"));
        assert_eq!(match_path("/orders/{id}", "/orders"), None);
        assert_eq!(match_path("/orders", "/order"), None);
    }
}
