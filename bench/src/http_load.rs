//! A small HTTP/1 load generator on hyper's client: a closed loop of
//! concurrent keep-alive connections (requests/s and latency percentiles),
//! and an open loop at a fixed offered rate (for end-to-end latency).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::stats::percentile;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client(connections: usize) -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(connections).build_http()
}

/// The status of a GET, or `None` when the server cannot be reached.
pub async fn get_status(url: &str) -> Option<u16> {
    let uri: hyper::Uri = url.parse().ok()?;
    let response = client(1).get(uri).await.ok()?;
    Some(response.status().as_u16())
}

/// POSTs a JSON body; returns the status and the body.
async fn post(client: &HttpClient, url: &hyper::Uri, body: String) -> Result<(u16, Bytes), String> {
    let request = hyper::Request::post(url.clone())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// What a closed-loop run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests failed or answered otherwise.
    pub errors: u64,
    /// The first error seen, to show.
    pub first_error: Option<String>,
    /// How long the run took.
    pub elapsed: Duration,
    /// Latency of each 2xx request in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
}

impl LoadResult {
    /// 2xx answers per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency percentile in milliseconds.
    pub fn latency(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p).unwrap_or(f64::NAN)
    }
}

/// `connections` clients each send `body(i)` to `url` back to back for `duration`.
pub async fn closed_loop(
    url: &str,
    connections: usize,
    duration: Duration,
    body: fn(usize) -> String,
) -> anyhow::Result<LoadResult> {
    let uri: hyper::Uri = url.parse()?;
    let client = client(connections);
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..connections).map(|c| {
        let (client, uri) = (client.clone(), uri.clone());
        tokio::spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            let mut i = c;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match post(&client, &uri, body(i)).await {
                    Ok((status, _)) if (200..300).contains(&status) => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok((status, answer)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{status} {}", String::from_utf8_lossy(&answer)));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                i += connections;
            }
            (latencies, errors, first_error)
        })
    });
    let mut result =
        LoadResult { ok: 0, errors: 0, first_error: None, elapsed: Duration::ZERO, latencies_ms: Vec::new() };
    for worker in futures::future::join_all(workers).await {
        let (latencies, errors, first_error) = worker?;
        result.ok += latencies.len() as u64;
        result.latencies_ms.extend(latencies);
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
    }
    result.elapsed = start.elapsed();
    result.latencies_ms.sort_by(f64::total_cmp);
    Ok(result)
}

/// One request of a fixed-rate run: when it was sent and what was answered.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When the request was sent.
    pub at: Instant,
    /// The status, or 0 when the request failed.
    pub status: u16,
    /// The answer's body.
    pub body: Bytes,
}

/// Sends `body(i)` to `url` at `rate` requests per second for `duration`,
/// without waiting for answers before sending the next; returns every request once answered.
pub async fn fixed_rate(
    url: &str,
    rate: f64,
    duration: Duration,
    first: usize,
    body: fn(usize) -> String,
) -> anyhow::Result<Vec<Sent>> {
    let uri: hyper::Uri = url.parse()?;
    let client = client(64);
    let count = (rate * duration.as_secs_f64()).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let sent = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        // Each request at its scheduled time, whatever the answers before it took (an open loop).
        tokio::time::sleep_until(start + interval * n as u32).await;
        let (client, uri, sent) = (client.clone(), uri.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            let (status, body) = post(&client, &uri, body(first + n)).await.unwrap_or((0, Bytes::new()));
            sent.lock().unwrap_or_else(|p| p.into_inner()).push(Sent { at, status, body });
        }));
    }
    for task in tasks {
        task.await?;
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(sent)
}
