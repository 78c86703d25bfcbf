//! The order system end to end (issue 6): the shipped functions.toml on a
//! private broker, with one and with two replica processes of every function.
//! 1,000 orders go through POST /orders with a known mix: valid, unknown
//! product, out of stock, declined card, amount over the gateway's limit,
//! transient gateway failures, malformed bodies and repeated Idempotency-Keys.
//! Then: malformed requests got their 4xx and produced nothing; every accepted
//! order reached exactly one terminal state with exactly the customer
//! notifications of that state; no order was charged twice; nothing went to a
//! dead-letter topic; GET /orders/{id} shows the terminal status; analytics
//! equal the sums of the test's own orders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kfn_functions::events::{
    Notification, NotificationKind, OrderCreated, OrderRejected, PaymentFailed, PaymentFailureReason, PaymentProcessed,
    RejectionReason, ShipmentDispatched,
};
use kfn_tests::order_system::{request, OrderSystem};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Requests of the mix (a repeated Idempotency-Key counts once).
const ORDERS: usize = 1_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// How long the pipeline may take to settle every order.
const SETTLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    /// `flaky-` customer: the gateway fails attempts 1 and 2.
    Flaky,
    /// Valid, sent twice with one Idempotency-Key.
    Repeated,
    UnknownProduct,
    OutOfStock,
    /// `declined-` customer.
    CardDeclined,
    /// Total above the gateway's limit of 5000.00.
    OverLimit,
    BadJson,
    WrongContentType,
    ZeroQuantity,
    ThreeDecimals,
}

/// How an accepted order ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminal {
    Rejected,
    PaymentFailed,
    Dispatched,
}

impl Kind {
    fn of(i: usize) -> Kind {
        match i % 20 {
            0..=7 | 19 => Kind::Valid,
            8 | 14 => Kind::Flaky,
            9 => Kind::Repeated,
            10 => Kind::UnknownProduct,
            11 => Kind::OutOfStock,
            12 => Kind::CardDeclined,
            13 => Kind::OverLimit,
            15 => Kind::BadJson,
            16 => Kind::WrongContentType,
            17 => Kind::ZeroQuantity,
            _ => Kind::ThreeDecimals,
        }
    }

    /// The status a malformed request gets, or None when it is accepted.
    fn refused_with(self) -> Option<u16> {
        match self {
            Kind::BadJson => Some(400),
            Kind::WrongContentType => Some(415),
            Kind::ZeroQuantity | Kind::ThreeDecimals => Some(422),
            _ => None,
        }
    }

    fn terminal(self) -> Terminal {
        match self {
            Kind::UnknownProduct | Kind::OutOfStock => Terminal::Rejected,
            Kind::CardDeclined | Kind::OverLimit => Terminal::PaymentFailed,
            _ => Terminal::Dispatched,
        }
    }
}

impl Terminal {
    /// The notifications a customer gets for an order ending so, in kinds.
    fn notifications(self) -> &'static [NotificationKind] {
        match self {
            Terminal::Rejected => &[NotificationKind::OrderRejected],
            Terminal::PaymentFailed => &[NotificationKind::PaymentFailed],
            // notify confirms the charge (PaymentProcessed) and the shipment (ShipmentDispatched).
            Terminal::Dispatched => &[NotificationKind::PaymentConfirmed, NotificationKind::ShipmentDispatched],
        }
    }

    /// The status GET /orders/{id} shows.
    fn status(self) -> &'static str {
        match self {
            Terminal::Rejected => "rejected",
            Terminal::PaymentFailed => "payment_failed",
            Terminal::Dispatched => "dispatched",
        }
    }
}

/// One request of the mix.
#[derive(Debug, Clone)]
struct Spec {
    i: usize,
    kind: Kind,
    customer_id: String,
    /// (product_id, quantity, unit_price)
    lines: Vec<(String, i32, Decimal)>,
}

impl Spec {
    fn new(i: usize) -> Spec {
        let kind = Kind::of(i);
        let customer_id = match kind {
            Kind::Flaky => format!("flaky-{i}"),
            Kind::CardDeclined => format!("declined-{i}"),
            _ => format!("c-{}", i % 37),
        };
        // Products a valid order may take: all but the roaster (stock 3, 4500.00 each).
        let products = kfn_tests::order_system::seeded_products();
        let regular: Vec<_> = products.iter().filter(|p| p.id != "SKU-011").collect();
        let roaster = products.iter().find(|p| p.id == "SKU-011").expect("the catalog has SKU-011");
        // 1 to 3 distinct products, 1 to 3 units each: at most one espresso machine
        // line, so the total stays below the gateway's limit and within stock.
        let mut lines: Vec<(String, i32, Decimal)> = (0..=(i % 3))
            .map(|l| {
                let p = regular[(i * 7 + l * 5) % regular.len()];
                (p.id.to_string(), 1 + ((i / 7 + l) % 3) as i32, p.price)
            })
            .collect();
        match kind {
            Kind::UnknownProduct => lines.push(("SKU-404".into(), 1, Decimal::new(1000, 2))),
            Kind::OutOfStock => lines = vec![(roaster.id.clone(), roaster.stock + 1 + (i % 3) as i32, roaster.price)],
            Kind::OverLimit => lines = vec![(roaster.id.clone(), 2, roaster.price)],
            _ => {}
        }
        Spec { i, kind, customer_id, lines }
    }

    fn total(&self) -> Decimal {
        self.lines.iter().map(|(_, q, p)| Decimal::from(*q) * p).sum()
    }

    /// (content type, body) of the request.
    fn body(&self) -> (&'static str, String) {
        let items: Vec<Value> = self
            .lines
            .iter()
            .enumerate()
            .map(|(l, (product, quantity, price))| {
                let quantity = if self.kind == Kind::ZeroQuantity && l == 0 { 0 } else { *quantity };
                let price =
                    if self.kind == Kind::ThreeDecimals && l == 0 { format!("{price}5") } else { price.to_string() };
                json!({"product_id": product, "quantity": quantity, "unit_price": price})
            })
            .collect();
        let body =
            json!({"customer_id": self.customer_id, "items": items, "shipping_address": format!("{} Main St", self.i)});
        match self.kind {
            Kind::BadJson => ("application/json", body.to_string()[..20].to_string()),
            Kind::WrongContentType => ("text/plain", body.to_string()),
            _ => ("application/json", body.to_string()),
        }
    }
}

/// What the API answered to one spec.
#[derive(Debug)]
struct Answer {
    spec: Spec,
    status: u16,
    body: String,
    /// The repeated request's answer, for [`Kind::Repeated`].
    repeated: Option<(u16, String)>,
}

async fn send(addr: SocketAddr, spec: Spec, run: &str) -> Answer {
    let (content_type, body) = spec.body();
    let key = format!("{run}-{}", spec.i);
    let mut headers = vec![("Content-Type", content_type)];
    if spec.kind == Kind::Repeated {
        headers.push(("Idempotency-Key", key.as_str()));
    }
    let (status, answer) = request(addr, "POST", "/orders", &headers, body.as_bytes()).await.expect("POST /orders");
    let repeated = if spec.kind == Kind::Repeated {
        // The retry of a client that missed the answer: same replica, same key, same body.
        Some(request(addr, "POST", "/orders", &headers, body.as_bytes()).await.expect("POST /orders again"))
    } else {
        None
    };
    Answer { spec, status, body: answer, repeated }
}

fn order_id(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body).ok()?["order_id"].as_str().map(str::to_string)
}

/// Polls GET `path` on `addr` until `done(status, body)`, failing after `limit`.
async fn get_until(addr: SocketAddr, path: &str, limit: Duration, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = request(addr, "GET", path, &[], b"").await.expect("GET");
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "GET {path} on {addr}: still {status} {body}");
        // The views offer no change notification over HTTP: poll.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn count_by<'a>(ids: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

fn metric_sum(text: &str, sample: &str) -> f64 {
    text.lines().filter_map(|l| l.strip_prefix(sample)).filter_map(|v| v.trim().parse::<f64>().ok()).sum()
}

/// One system at a time: each runs 21 functions per replica on a machine of few cores.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn the_order_system_settles_every_order_once(replicas: usize) {
    the_order_system_settles_every_order_once_on(replicas, false).await;
}

/// The 1,000 orders on the plain broker, or (`secure`) on the secured one
/// with every function under its own principal and only its planned ACLs.
async fn the_order_system_settles_every_order_once_on(replicas: usize, secure: bool) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    let system = if secure {
        OrderSystem::start_secured(binary, replicas).await
    } else {
        OrderSystem::start(binary, replicas).await
    };
    let mut system = system.expect("the order system starts");
    eprintln!("order system ready after {:?}", started.elapsed());
    let run = kfn_tests::unique("idem");

    // --- 1,000 requests, CONCURRENCY at a time, spread over the replicas.
    let http = system.http.clone();
    let answers: Vec<Answer> = futures::stream::iter((0..ORDERS).map(Spec::new))
        .map(|spec| send(http[spec.i % http.len()], spec, &run))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    eprintln!("{} requests answered after {:?}", answers.len(), started.elapsed());

    // --- The API's answers.
    let mut accepted: BTreeMap<String, Spec> = BTreeMap::new();
    for a in &answers {
        match a.spec.kind.refused_with() {
            Some(status) => {
                assert_eq!(a.status, status, "{:?}: {}", a.spec, a.body);
                let error: Value = serde_json::from_str(&a.body).expect("a JSON error");
                assert!(error["error"].is_string(), "{}", a.body);
                if status == 422 {
                    let field =
                        if a.spec.kind == Kind::ZeroQuantity { "items[0].quantity" } else { "items[0].unit_price" };
                    assert_eq!(error["field"], field, "{}", a.body);
                }
            }
            None => {
                assert_eq!(a.status, 202, "{:?}: {}", a.spec, a.body);
                let id = order_id(&a.body).expect("202 names the order_id");
                if let Some((status, body)) = &a.repeated {
                    assert_eq!((*status, order_id(body)), (202, Some(id.clone())), "a repeated Idempotency-Key");
                }
                assert!(accepted.insert(id, a.spec.clone()).is_none(), "an order_id given twice");
            }
        }
    }
    let expected_accepted = (0..ORDERS).filter(|i| Kind::of(*i).refused_with().is_none()).count();
    assert_eq!(accepted.len(), expected_accepted);
    let terminal_of = |id: &str| accepted[id].kind.terminal();
    let expected_notifications: usize = accepted.keys().map(|id| terminal_of(id).notifications().len()).sum();

    // --- Await the pipeline: every accepted order has a terminal event and its notifications.
    let deadline = Instant::now() + SETTLE;
    loop {
        let rejected: Vec<OrderRejected> = system.read_events("orders.rejected").await.expect("orders.rejected");
        let failed: Vec<PaymentFailed> = system.read_events("payments.failed").await.expect("payments.failed");
        let dispatched: Vec<ShipmentDispatched> =
            system.read_events("shipments.dispatched").await.expect("shipments.dispatched");
        let notifications = system.read("notifications.outbound").await.expect("notifications").len();
        let ended: BTreeSet<&str> = rejected
            .iter()
            .map(|e| e.order_id.as_str())
            .chain(failed.iter().map(|e| e.order_id.as_str()))
            .chain(dispatched.iter().map(|e| e.order_id.as_str()))
            .collect();
        let missing = accepted.keys().filter(|id| !ended.contains(id.as_str())).count();
        if missing == 0 && notifications >= expected_notifications {
            break;
        }
        assert!(system.replicas_alive(), "a replica exited; logs in {}", system.dir.display());
        if Instant::now() >= deadline {
            let stuck: Vec<&str> = accepted.keys().map(String::as_str).filter(|id| !ended.contains(id)).collect();
            let stages = system.diagnose(&stuck).await;
            panic!(
                "after {SETTLE:?}: {missing} orders without a terminal event, {notifications} of \
                 {expected_notifications} notifications; {stages}; logs in {}",
                system.dir.display()
            );
        }
        // Topics offer no change notification to a reader of whole topics: poll.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("pipeline settled after {:?}", started.elapsed());

    // --- orders.created holds exactly the accepted orders, as sent.
    let created: Vec<OrderCreated> = system.read_events("orders.created").await.expect("orders.created");
    assert_eq!(created.len(), accepted.len(), "orders.created holds one event per accepted order, nothing else");
    for order in &created {
        let spec = accepted.get(&order.order_id).unwrap_or_else(|| panic!("an order nobody accepted: {order:?}"));
        assert_eq!(order.customer_id, spec.customer_id);
        assert_eq!(order.total_amount, spec.total());
        let lines: Vec<_> = order.items.iter().map(|it| (it.product_id.clone(), it.quantity, it.unit_price)).collect();
        assert_eq!(lines, spec.lines);
    }
    assert_eq!(created.iter().map(|o| o.order_id.as_str()).collect::<BTreeSet<_>>().len(), created.len());

    // --- Exactly one terminal event per accepted order, on the topic its kind leads to.
    let rejected: Vec<OrderRejected> = system.read_events("orders.rejected").await.expect("orders.rejected");
    let failed: Vec<PaymentFailed> = system.read_events("payments.failed").await.expect("payments.failed");
    let dispatched: Vec<ShipmentDispatched> =
        system.read_events("shipments.dispatched").await.expect("shipments.dispatched");
    let mut terminals: HashMap<&str, Vec<Terminal>> = HashMap::new();
    for e in &rejected {
        let expected = match accepted.get(&e.order_id).map(|s| s.kind) {
            Some(Kind::UnknownProduct) => RejectionReason::UnknownProduct,
            Some(Kind::OutOfStock) => RejectionReason::InsufficientStock,
            other => panic!("order {} of kind {other:?} was rejected: {e:?}", e.order_id),
        };
        assert_eq!(e.reason, expected, "{e:?}");
        terminals.entry(&e.order_id).or_default().push(Terminal::Rejected);
    }
    for e in &failed {
        let expected = match accepted.get(&e.order_id).map(|s| s.kind) {
            Some(Kind::CardDeclined) => PaymentFailureReason::CardDeclined,
            Some(Kind::OverLimit) => PaymentFailureReason::AmountLimitExceeded,
            other => panic!("order {} of kind {other:?} failed payment: {e:?}", e.order_id),
        };
        assert_eq!(e.reason, expected, "{e:?}");
        terminals.entry(&e.order_id).or_default().push(Terminal::PaymentFailed);
    }
    for e in &dispatched {
        terminals.entry(&e.order_id).or_default().push(Terminal::Dispatched);
    }
    for (id, spec) in &accepted {
        assert_eq!(
            terminals.get(id.as_str()).map(Vec::as_slice),
            Some(&[spec.kind.terminal()][..]),
            "order {id} ({:?}) must end exactly once as {:?}",
            spec.kind,
            spec.kind.terminal()
        );
    }
    assert_eq!(terminals.len(), accepted.len(), "terminal events of orders nobody accepted");

    // --- No order charged twice: one PaymentProcessed per dispatched order, none for the others.
    let processed: Vec<PaymentProcessed> = system.read_events("payments.processed").await.expect("payments.processed");
    let charges = count_by(processed.iter().map(|p| p.order_id.as_str()));
    for (id, spec) in &accepted {
        let expected = usize::from(spec.kind.terminal() == Terminal::Dispatched);
        assert_eq!(charges.get(id.as_str()).copied().unwrap_or(0), expected, "charges of order {id} ({:?})", spec.kind);
    }
    assert_eq!(processed.len(), charges.values().sum::<usize>());
    assert_eq!(charges.len(), accepted.values().filter(|s| s.kind.terminal() == Terminal::Dispatched).count());

    // --- Exactly the notifications of each order's terminal state, each once, to its customer.
    let notifications: Vec<Notification> =
        system.read_events("notifications.outbound").await.expect("notifications.outbound");
    let mut got: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for n in &notifications {
        let spec = accepted.get(&n.order_id).unwrap_or_else(|| panic!("a notification of an unknown order: {n:?}"));
        assert_eq!(n.customer_id, spec.customer_id, "{n:?}");
        *got.entry((n.order_id.clone(), n.kind.as_str())).or_default() += 1;
    }
    let want: BTreeMap<(String, &str), usize> = accepted
        .iter()
        .flat_map(|(id, spec)| spec.kind.terminal().notifications().iter().map(move |k| ((id.clone(), k.as_str()), 1)))
        .collect();
    let wrong: Vec<_> = want
        .keys()
        .chain(got.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| (k, want.get(k).copied().unwrap_or(0), got.get(k).copied().unwrap_or(0)))
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "notifications (order, kind) expected vs got: {wrong:?}");
    assert_eq!(notifications.len(), expected_notifications);

    // --- Nothing was dead-lettered.
    for topic in system.topics.iter().filter(|t| t.ends_with(".dlq")) {
        let letters = system.read(topic).await.expect("dead letters");
        assert!(letters.is_empty(), "{} dead letter(s) on {topic}; logs in {}", letters.len(), system.dir.display());
    }

    // --- Transient gateway failures were retried: at least 2 failed attempts per flaky order.
    // With several replicas, each process took part of the groups' work.
    let mut retries = 0.0;
    let mut validated = Vec::new();
    for addr in &system.admin {
        let (_, text) = request(*addr, "GET", "/metrics", &[], b"").await.expect("GET /metrics");
        retries += metric_sum(&text, "kfn_retries_total{function=\"payment\"}");
        validated.push(metric_sum(&text, "kfn_invocations_total{function=\"validation\",outcome=\"ok\"}"));
    }
    assert!(validated.iter().all(|n| *n > 0.0), "validation calls per replica: {validated:?}");
    assert!(validated.iter().sum::<f64>() >= accepted.len() as f64, "validation calls per replica: {validated:?}");
    let flaky = accepted.values().filter(|s| s.kind == Kind::Flaky).count();
    assert!(retries >= (2 * flaky) as f64, "{retries} payment retries for {flaky} flaky orders");

    // --- GET /orders/{id} shows the terminal status (a sample, on every replica).
    for (n, (id, spec)) in accepted.iter().enumerate().filter(|(n, _)| n % 16 == 0) {
        let addr = system.http[n % system.http.len()];
        let status = spec.kind.terminal().status();
        let body = get_until(addr, &format!("/orders/{id}"), Duration::from_secs(30), |code, body| {
            code == 200 && serde_json::from_str::<Value>(body).is_ok_and(|row| row["status"] == status)
        })
        .await;
        let row: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(row["order_id"], id.as_str());
        let history = row["history"].as_array().expect("a history");
        assert_eq!(history.first().map(|h| &h["status"]), Some(&json!("created")), "{body}");
    }

    // --- Analytics: units and revenue per product, orders and revenue over the windows.
    let mut products: BTreeMap<String, (i64, Decimal)> = BTreeMap::new();
    for spec in accepted.values() {
        for (product, quantity, price) in &spec.lines {
            let e = products.entry(product.clone()).or_insert((0, Decimal::ZERO));
            e.0 += i64::from(*quantity);
            e.1 += Decimal::from(*quantity) * price;
        }
    }
    let top = |body: &str| -> Option<BTreeMap<String, (i64, Decimal)>> {
        let rows: Vec<Value> = serde_json::from_str(body).ok()?;
        rows.iter()
            .map(|r| {
                let revenue = r["total_revenue"].as_str()?.parse().ok()?;
                Some((r["product_id"].as_str()?.to_string(), (r["total_quantity"].as_i64()?, revenue)))
            })
            .collect()
    };
    let revenue: Decimal = accepted.values().map(Spec::total).sum();
    let metrics = |body: &str| -> Option<(i64, Decimal)> {
        let rows: Vec<Value> = serde_json::from_str(body).ok()?;
        rows.iter().try_fold((0, Decimal::ZERO), |(count, sum), r| {
            Some((count + r["order_count"].as_i64()?, sum + r["total_revenue"].as_str()?.parse::<Decimal>().ok()?))
        })
    };
    for addr in system.http.clone() {
        let body = get_until(addr, "/analytics/top-products", Duration::from_secs(60), |_, body| {
            top(body).as_ref() == Some(&products)
        })
        .await;
        assert_eq!(top(&body), Some(products.clone()));
        let body = get_until(addr, "/analytics/orders", Duration::from_secs(60), |_, body| {
            metrics(body) == Some((accepted.len() as i64, revenue))
        })
        .await;
        assert_eq!(metrics(&body), Some((accepted.len() as i64, revenue)));
    }

    assert!(system.replicas_alive(), "a replica exited; logs in {}", system.dir.display());
    eprintln!("checked after {:?}", started.elapsed());
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_settles_1000_orders_exactly_once() {
    the_order_system_settles_every_order_once(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_settle_1000_orders_exactly_once() {
    the_order_system_settles_every_order_once(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_settles_1000_orders_with_a_principal_per_function_and_acls_enforced() {
    the_order_system_settles_every_order_once_on(1, true).await;
}
