//! The clients: a pool of tasks that POST orders at a steady rate, each
//! with an `Idempotency-Key`, retrying a failed attempt (no answer, a
//! timeout, a 5xx) with the same key on the next replica, as a careful
//! client would.
//!
//! Every order's customer_id is `chaos-<key>`: unique per request, so the
//! invariants can tell a second order created by a retry from a second
//! event of one order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kfn_tests::order_system::{request, seeded_products, SeededProduct};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// How long one attempt may take before the client gives up on it and retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client keeps retrying one order.
const GIVE_UP_AFTER: Duration = Duration::from_secs(180);

/// One order as the client sent it.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    /// The Idempotency-Key (also the customer_id's suffix).
    pub key: String,
    /// `chaos-<key>`.
    pub customer_id: String,
    /// (product_id, quantity, unit_price).
    pub lines: Vec<(String, i32, Decimal)>,
}

impl OrderRequest {
    /// The `n`th order: one to three products of the catalog (never beyond
    /// stock or the gateway's limit), one to three units each.
    pub fn new(key: String, n: usize, products: &[SeededProduct]) -> OrderRequest {
        // The roaster (stock 3, 4500.00) is left out, as in tests/it/order_system.rs.
        let regular: Vec<&SeededProduct> = products.iter().filter(|p| p.id != "SKU-011").collect();
        let lines = (0..=(n % 3))
            .map(|l| {
                let p = regular[(n * 7 + l * 5) % regular.len()];
                (p.id.clone(), 1 + ((n / 7 + l) % 3) as i32, p.price)
            })
            .collect();
        OrderRequest { customer_id: format!("chaos-{key}"), key, lines }
    }

    /// The order's total.
    pub fn total(&self) -> Decimal {
        self.lines.iter().map(|(_, q, p)| Decimal::from(*q) * p).sum()
    }

    fn body(&self) -> String {
        let items: Vec<Value> = self
            .lines
            .iter()
            .map(|(p, q, price)| json!({"product_id": p, "quantity": q, "unit_price": price.to_string()}))
            .collect();
        json!({"customer_id": self.customer_id, "items": items, "shipping_address": "1 Chaos Lane"}).to_string()
    }
}

/// What became of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request.
    pub order: OrderRequest,
    /// The order id of the accepting answer; None when the client gave up.
    pub order_id: Option<String>,
    /// Each attempt (one: no retry): when it began (UTC), where it went, what came back.
    pub history: Vec<String>,
}

impl Outcome {
    /// Attempts made (1 = no retry).
    pub fn attempts(&self) -> usize {
        self.history.len()
    }
}

/// The orders sent so far, shared by the clients and the runner.
#[derive(Default)]
pub struct Ledger {
    outcomes: Mutex<BTreeMap<String, Outcome>>,
    sent: AtomicU64,
    last_sent: Mutex<Option<Instant>>,
}

impl Ledger {
    /// Every outcome so far, by key.
    pub fn outcomes(&self) -> BTreeMap<String, Outcome> {
        self.outcomes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests started so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// When the last request so far was started.
    pub fn last_sent(&self) -> Option<Instant> {
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, outcome: Outcome) {
        self.outcomes.lock().unwrap_or_else(|p| p.into_inner()).insert(outcome.order.key.clone(), outcome);
    }
}

/// Sends `order` to `targets[first]`, then the next replica on each failure, until accepted or [`GIVE_UP_AFTER`].
pub async fn send(ledger: &Ledger, targets: &[SocketAddr], first: usize, order: OrderRequest) -> Outcome {
    ledger.sent.fetch_add(1, Ordering::Relaxed);
    *ledger.last_sent.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    let body = order.body();
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut history = Vec::new();
    let mut at = first;
    let order_id = loop {
        let target = targets[at % targets.len()];
        let headers = [("Content-Type", "application/json"), ("Idempotency-Key", order.key.as_str())];
        let began = kfn_sdk::now_ms();
        let answer =
            tokio::time::timeout(ATTEMPT_TIMEOUT, request(target, "POST", "/orders", &headers, body.as_bytes())).await;
        let got = match &answer {
            Ok(Ok((status, _))) => status.to_string(),
            Ok(Err(e)) => format!("error {e}"),
            Err(_) => format!("no answer in {} s", ATTEMPT_TIMEOUT.as_secs()),
        };
        history.push(format!("{} to {target}: {got}", crate::invariants::clock(began)));
        if let Ok(Ok((status @ 200..=299, text))) = &answer {
            let id = serde_json::from_str::<Value>(text).ok().and_then(|v| v["order_id"].as_str().map(str::to_string));
            match id {
                Some(id) => break Some(id),
                None => eprintln!("chaos: {} answered {status} without an order_id: {text}", order.key),
            }
        }
        if let Ok(Ok((status @ (400 | 413 | 415 | 422), text))) = &answer {
            // The request itself is wrong: retrying cannot help. Never expected here. (Other
            // statuses, a 404 included, may come from something else than kfn during a fault.)
            eprintln!("chaos: order {} refused with {status}: {text}", order.key);
            break None;
        }
        if started.elapsed() > GIVE_UP_AFTER {
            eprintln!("chaos: gave up on order {} after {} attempts: {answer:?}", order.key, history.len());
            break None;
        }
        at += 1;
        // A pause between attempts: the next replica may be the one that just failed, restarting.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    };
    let outcome = Outcome { order, order_id, history };
    ledger.record(outcome.clone());
    outcome
}

/// The steady load: `orders` requests at `rate` a second, keys `o00000`...
pub struct Load {
    /// What the clients sent and got.
    pub ledger: Arc<Ledger>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts the clients (at most `concurrency` requests in flight).
    pub fn start(targets: Vec<SocketAddr>, orders: usize, rate: f64, concurrency: usize) -> Load {
        let ledger = Arc::new(Ledger::default());
        let products = Arc::new(seeded_products());
        let shared = ledger.clone();
        let task = tokio::spawn(async move {
            let targets = Arc::new(targets);
            let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut clients = Vec::with_capacity(orders);
            for n in 0..orders {
                ticks.tick().await;
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let (ledger, targets, products) = (shared.clone(), targets.clone(), products.clone());
                clients.push(tokio::spawn(async move {
                    let order = OrderRequest::new(format!("o{n:05}"), n, &products);
                    send(&ledger, &targets, n, order).await;
                    drop(permit);
                }));
            }
            futures::future::join_all(clients).await;
        });
        Load { ledger, task }
    }

    /// Whether every order was sent and answered (or given up on).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for every client.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}
