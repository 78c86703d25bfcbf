//! A tiny HTTP server that answers like a Confluent registry from canned JSON.
//!
//! A test double for the HTTP registry only (not a broker): it lets the client
//! tests count requests, fail on cue and see what the client sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub body: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

/// Decides the answer (status, JSON body) to the n-th request (from 0).
pub type Route = Arc<dyn Fn(usize, &Seen) -> (u16, String) + Send + Sync>;

/// A running fake registry; stops when dropped.
pub struct FakeRegistry {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl FakeRegistry {
    /// Serves `route` on a free local port.
    pub async fn start(route: impl Fn(usize, &Seen) -> (u16, String) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::new(route))
    }

    /// Serves `route` on a listener the test bound itself (to start late on a known port).
    pub fn serve(listener: TcpListener, route: Route) -> Self {
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let task = tokio::spawn(accept_loop(listener, route, Arc::clone(&seen)));
        Self { addr, seen, task }
    }

    /// The registry's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, route: Route, seen: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let route = Arc::clone(&route);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&route), Arc::clone(&seen)));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    route: Route,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorization = header(hyper::header::AUTHORIZATION);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let method = req.method().to_string();
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request =
        Seen { method, target, body: String::from_utf8_lossy(&body).into_owned(), authorization, content_type };
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        seen.len() - 1
    };
    let (status, json) = route(n, &request);
    let response = Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json")
        .body(Full::new(Bytes::from(json)))
        .unwrap();
    Ok(response)
}

/// Confluent's error body.
pub fn error_json(code: i32, message: &str) -> String {
    serde_json::json!({ "error_code": code, "message": message }).to_string()
}

/// The answer to `GET /schemas/ids/{id}`.
pub fn schema_json(schema: &str) -> String {
    serde_json::json!({ "schema": schema }).to_string()
}
