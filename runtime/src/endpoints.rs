//! The admin port: /metrics (Prometheus text), /healthz, /readyz.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{FunctionLabels, Metrics};
use crate::trigger::server::{self, HttpResponse};

/// What /readyz looks at: each function's assignment counter.
#[derive(Clone, Default)]
pub struct Readiness {
    functions: Vec<(String, watch::Receiver<u64>)>,
}

impl Readiness {
    /// Adds a function that must have received an assignment.
    pub fn watch(&mut self, function: &str, assignments: watch::Receiver<u64>) {
        self.functions.push((function.to_string(), assignments));
    }

    /// The functions still waiting for their first assignment.
    pub fn waiting(&self) -> Vec<&str> {
        self.functions.iter().filter(|(_, rx)| *rx.borrow() == 0).map(|(name, _)| name.as_str()).collect()
    }

    /// Waits until every watched function received its first assignment.
    pub async fn all_ready(&self) {
        for (_, rx) in &self.functions {
            // An error means the function stopped: nothing more to wait for.
            let _ = rx.clone().wait_for(|assignments| *assignments > 0).await;
        }
    }

    /// Sets `kfn_function_ready` of every watched function to what /readyz would say of it.
    pub fn export(&self, metrics: &Metrics) {
        for (function, rx) in &self.functions {
            let ready = metrics.function_ready.get_or_create(&FunctionLabels { function: function.clone() });
            ready.set(i64::from(*rx.borrow() > 0));
        }
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Metrics, readiness: Readiness, shutdown: watch::Receiver<bool>) {
    let handler = Arc::new(move |req: Request<Incoming>| {
        let response: HttpResponse = match req.uri().path() {
            "/metrics" => {
                readiness.export(&metrics);
                server::text(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            }
            "/healthz" => server::json(200, "{\"status\":\"ok\"}"),
            "/readyz" => {
                let waiting = readiness.waiting();
                if waiting.is_empty() {
                    server::json(200, "{\"status\":\"ready\"}")
                } else {
                    server::json(
                        503,
                        serde_json::json!({ "status": "waiting for assignment", "functions": waiting }).to_string(),
                    )
                }
            }
            _ => server::json(404, "{\"error\":\"not found: try /metrics, /healthz or /readyz\"}"),
        };
        std::future::ready(response)
    });
    server::serve(listener, handler, shutdown).await;
}
