//! The invariants, checked once the run drained, from the topics as a
//! read_committed consumer sees them and from what the clients were answered:
//! every accepted order has exactly one terminal event; exactly the expected
//! notifications, one per (order, kind); no order charged twice; the
//! analytics answers equal the sums of the created orders; dead letters
//! none, or each printed with its cause.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use kfn::avro::{RegistryClient, SchemaCache};
use kfn::kafka::fetch::ConsumedRecord;
use kfn::kafka::Cluster;
use kfn_functions::events::{
    Notification, NotificationKind, OrderCreated, OrderRejected, PaymentFailed, PaymentProcessed, ShipmentDispatched,
};
use kfn_tests::order_system::request;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::load::Outcome;

/// One invariant's verdict.
#[derive(Debug, Clone)]
pub struct Check {
    /// The invariant.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Figures, and the first offenders when it did not.
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check { name: name.into(), ok, detail }
}

/// The totals of the run.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Requests sent (each with its own key).
    pub requested: usize,
    /// Requests answered 2xx with an order id.
    pub accepted: usize,
    /// Requests the clients gave up on (never answered 2xx).
    pub gave_up: usize,
    /// Accepted orders missing from orders.created or without a terminal event.
    pub lost: usize,
    /// Orders created beyond one per request, plus terminal events beyond one per order.
    pub duplicated: usize,
    /// Dead letters.
    pub dead_letters: usize,
}

/// Reads the topics of the finished run.
pub struct Reader {
    cluster: Cluster,
    schemas: SchemaCache,
}

impl Reader {
    /// A reader of `cluster`'s topics, decoding with the registry at `registry_url`.
    pub fn new(cluster: Cluster, registry_url: &str) -> anyhow::Result<Reader> {
        Ok(Reader { cluster, schemas: SchemaCache::new(RegistryClient::new(registry_url, None)?) })
    }

    /// Every committed record of `topic` (read_committed, to the end of the log).
    pub async fn records(&self, topic: &str) -> anyhow::Result<Vec<ConsumedRecord>> {
        let records = kfn::invoker::replay::read_topic(&self.cluster, topic).await?;
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }

    /// Every committed value of `topic` decoded as `E` with its writer's schema.
    pub async fn events<E: DeserializeOwned>(&self, topic: &str) -> anyhow::Result<Vec<E>> {
        let mut out = Vec::new();
        for record in self.records(topic).await? {
            let value = record.value.ok_or_else(|| anyhow!("{topic}: a record without a value"))?;
            let datum = self.schemas.resolve(&value).await?;
            out.push(datum.decode::<E>().with_context(|| format!("decoding a record of {topic}"))?);
        }
        Ok(out)
    }

    /// Where each of `orders` went along the pipeline, one line per order:
    /// `topic[partition]@offset hh:mm:ss.mmm` (the record's timestamp, UTC)
    /// for every committed record whose value names it, so that a duplicate
    /// shows the hop where it began and, by its time, the fault beside it.
    pub async fn trace(&self, orders: &[&str]) -> anyhow::Result<Vec<String>> {
        const PIPELINE: [&str; 8] = [
            // The HTTP replicas' answers (their value holds the order id they gave).
            "order_api.idempotency",
            "orders.created",
            "orders.validated",
            "payments.processed",
            "inventory.reserved",
            "shipments.created",
            "shipments.dispatched",
            "notifications.outbound",
        ];
        let mut hops: BTreeMap<&str, Vec<String>> = orders.iter().map(|o| (*o, Vec::new())).collect();
        for topic in PIPELINE {
            for (partition, record) in kfn::invoker::replay::read_topic(&self.cluster, topic).await? {
                let Some(value) = record.value.as_deref() else { continue };
                for (order, seen) in hops.iter_mut() {
                    if value.windows(order.len()).any(|w| w == order.as_bytes()) {
                        let at = clock(record.timestamp_ms);
                        seen.push(format!("{topic}[{partition}]@{} {at}", record.offset));
                    }
                }
            }
        }
        Ok(hops.into_iter().map(|(order, seen)| format!("{order}: {}", seen.join(", "))).collect())
    }
}

/// `ms` since the epoch as `hh:mm:ss.mmm` UTC, to set beside the replicas' logs.
pub fn clock(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}.{millis:03}", day / 3600, day % 3600 / 60, day % 60)
}

fn first<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<T> = items.into_iter().take(5).collect();
    if items.is_empty() {
        String::new()
    } else {
        format!("; first: {items:?}")
    }
}

/// Checks every invariant; returns the verdicts and the totals.
pub async fn check_all(
    reader: &Reader,
    outcomes: &BTreeMap<String, Outcome>,
    http: &[SocketAddr],
    dead_letter_topics: &[String],
) -> anyhow::Result<(Vec<Check>, Totals)> {
    let mut checks = Vec::new();
    let mut totals = Totals { requested: outcomes.len(), ..Totals::default() };
    let accepted: BTreeMap<&str, &Outcome> =
        outcomes.values().filter_map(|o| o.order_id.as_deref().map(|id| (id, o))).collect();
    totals.accepted = outcomes.values().filter(|o| o.order_id.is_some()).count();
    totals.gave_up = totals.requested - totals.accepted;

    // --- orders.created: one order per request, as sent.
    let created: Vec<OrderCreated> = reader.events("orders.created").await?;
    let by_customer = count(created.iter().map(|o| o.customer_id.as_str()));
    let extra_created: usize = by_customer.values().map(|n| n.saturating_sub(1)).sum();
    let created_ids: BTreeSet<&str> = created.iter().map(|o| o.order_id.as_str()).collect();
    let missing: Vec<&str> = accepted.keys().copied().filter(|id| !created_ids.contains(id)).collect();
    let twice: Vec<&str> = by_customer.iter().filter(|(_, n)| **n > 1).map(|(c, _)| *c).collect();
    let retried_twice: Vec<&str> = twice
        .iter()
        .filter_map(|c| c.strip_prefix("chaos-"))
        .filter(|k| outcomes.get(*k).is_some_and(|o| o.attempts() > 1))
        .collect();
    checks.push(check(
        "one order per request in orders.created",
        missing.is_empty() && extra_created == 0,
        format!(
            "{} created for {} accepted requests; {} accepted but not created; {} request(s) created more than once \
             ({} of them after a retry){}{}",
            created.len(),
            accepted.len(),
            missing.len(),
            twice.len(),
            retried_twice.len(),
            first(&missing),
            first(&twice)
        ),
    ));

    // Where a request created twice began: what its client went through, and
    // each of its orders traced from the answer that gave it (at most 5).
    for customer in twice.iter().take(5) {
        let key = customer.strip_prefix("chaos-").unwrap_or(customer);
        let ids: Vec<&str> =
            created.iter().filter(|o| o.customer_id == *customer).map(|o| o.order_id.as_str()).collect();
        let client = outcomes.get(key).map(|o| (o.order_id.clone(), o.history.clone()));
        eprintln!("chaos: created twice: request {key}: (order accepted, attempts) {client:?}; orders {ids:?}");
        for line in reader.trace(&ids).await? {
            eprintln!("chaos: created twice, traced: {line}");
        }
    }

    // --- Exactly one terminal event per created order.
    let rejected: Vec<OrderRejected> = reader.events("orders.rejected").await?;
    let failed: Vec<PaymentFailed> = reader.events("payments.failed").await?;
    let dispatched: Vec<ShipmentDispatched> = reader.events("shipments.dispatched").await?;
    let mut terminals: BTreeMap<&str, usize> = BTreeMap::new();
    for id in rejected
        .iter()
        .map(|e| e.order_id.as_str())
        .chain(failed.iter().map(|e| e.order_id.as_str()))
        .chain(dispatched.iter().map(|e| e.order_id.as_str()))
    {
        *terminals.entry(id).or_default() += 1;
    }
    let without: Vec<&str> = created_ids.iter().copied().filter(|id| !terminals.contains_key(id)).collect();
    let several: Vec<(&str, usize)> = terminals.iter().filter(|(_, n)| **n > 1).map(|(id, n)| (*id, *n)).collect();
    let unknown: Vec<&str> = terminals.keys().copied().filter(|id| !created_ids.contains(id)).collect();
    checks.push(check(
        "exactly one terminal event per order",
        without.is_empty() && several.is_empty() && unknown.is_empty(),
        format!(
            "{} dispatched, {} rejected, {} payment failed; {} order(s) without one, {} with several, {} of no created \
             order{}{}",
            dispatched.len(),
            rejected.len(),
            failed.len(),
            without.len(),
            several.len(),
            unknown.len(),
            first(&without),
            first(&several)
        ),
    ));
    let lost: BTreeSet<&str> =
        missing.iter().chain(without.iter().filter(|id| accepted.contains_key(*id))).copied().collect();
    totals.lost = lost.len();
    totals.duplicated = extra_created + several.iter().map(|(_, n)| n - 1).sum::<usize>();

    // --- No order charged twice.
    let processed: Vec<PaymentProcessed> = reader.events("payments.processed").await?;
    let charges = count(processed.iter().map(|p| p.order_id.as_str()));
    let charged_twice: Vec<(&str, usize)> = charges.iter().filter(|(_, n)| **n > 1).map(|(id, n)| (*id, *n)).collect();
    let failed_ids: BTreeSet<&str> = failed.iter().map(|f| f.order_id.as_str()).collect();
    let charged_and_failed: Vec<&str> = charges.keys().copied().filter(|id| failed_ids.contains(id)).collect();
    checks.push(check(
        "no order charged twice",
        charged_twice.is_empty() && charged_and_failed.is_empty(),
        format!(
            "{} charges of {} orders; {} charged more than once; {} both charged and failed{}",
            processed.len(),
            charges.len(),
            charged_twice.len(),
            charged_and_failed.len(),
            first(&charged_twice)
        ),
    ));

    // --- Exactly the expected notifications: one per (order, kind) of its events.
    let notifications: Vec<Notification> = reader.events("notifications.outbound").await?;
    let mut want: BTreeSet<(&str, &str)> = BTreeSet::new();
    want.extend(rejected.iter().map(|e| (e.order_id.as_str(), NotificationKind::OrderRejected.as_str())));
    want.extend(failed.iter().map(|e| (e.order_id.as_str(), NotificationKind::PaymentFailed.as_str())));
    want.extend(processed.iter().map(|e| (e.order_id.as_str(), NotificationKind::PaymentConfirmed.as_str())));
    want.extend(dispatched.iter().map(|e| (e.order_id.as_str(), NotificationKind::ShipmentDispatched.as_str())));
    let got = count(notifications.iter().map(|n| (n.order_id.as_str(), n.kind.as_str())));
    let absent: Vec<_> = want.iter().filter(|k| !got.contains_key(*k)).collect();
    let repeated: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected: Vec<_> = got.keys().filter(|k| !want.contains(*k)).collect();
    checks.push(check(
        "exactly the expected notifications",
        absent.is_empty() && repeated.is_empty() && unexpected.is_empty(),
        format!(
            "{} notifications for {} expected (order, kind); {} missing, {} sent more than once, {} unexpected{}{}",
            notifications.len(),
            want.len(),
            absent.len(),
            repeated.len(),
            unexpected.len(),
            first(&absent),
            first(&repeated)
        ),
    ));

    // Where the duplicates began: every order with several terminal events or
    // charges, or a notification twice (at most 5), traced along the pipeline.
    let suspects: BTreeSet<&str> = several
        .iter()
        .chain(&charged_twice)
        .map(|(id, _)| *id)
        .chain(repeated.iter().map(|((id, _), _)| *id))
        .collect();
    if !suspects.is_empty() {
        let orders: Vec<&str> = suspects.into_iter().take(5).collect();
        for line in reader.trace(&orders).await? {
            eprintln!("chaos: duplicate traced: {line}");
        }
    }

    // --- Analytics equal the truth of the created orders (each order once).
    let mut seen = BTreeSet::new();
    let mut products: BTreeMap<String, (i64, Decimal)> = BTreeMap::new();
    let (mut orders, mut revenue) = (0i64, Decimal::ZERO);
    for order in created.iter().filter(|o| seen.insert(o.order_id.as_str())) {
        orders += 1;
        revenue += order.total_amount;
        for item in &order.items {
            let e = products.entry(item.product_id.clone()).or_insert((0, Decimal::ZERO));
            e.0 += i64::from(item.quantity);
            e.1 += Decimal::from(item.quantity) * item.unit_price;
        }
    }
    let accepted_revenue: Decimal = accepted.values().map(|o| o.order.total()).sum();
    for (n, addr) in http.iter().enumerate() {
        let top =
            get_until(*addr, "/analytics/top-products", |body| top_products(body).as_ref() == Some(&products)).await;
        let totals_answer =
            get_until(*addr, "/analytics/orders", |body| order_metrics(body) == Some((orders, revenue))).await;
        let (top_ok, metrics_ok) =
            (top_products(&top).as_ref() == Some(&products), order_metrics(&totals_answer) == Some((orders, revenue)));
        checks.push(check(
            &format!("analytics of replica {n} equal the created orders"),
            top_ok && metrics_ok,
            format!(
                "truth: {orders} orders, revenue {revenue} ({} products); accepted by the clients: {} orders, revenue \
                 {accepted_revenue}; /analytics/orders sums to {:?}{}; top-products {}",
                products.len(),
                accepted.len(),
                order_metrics(&totals_answer),
                if metrics_ok {
                    String::new()
                } else {
                    format!(" (its answer: {})", totals_answer.chars().take(400).collect::<String>())
                },
                if top_ok { "equal".to_string() } else { top_products_diff(top_products(&top), &products) }
            ),
        ));
    }

    // --- Dead letters: none, or each printed with its cause.
    let mut letters = Vec::new();
    for topic in dead_letter_topics {
        for record in reader.records(topic).await? {
            let causes: Vec<String> = record
                .headers
                .iter()
                .filter(|h| h.name.starts_with("kfn."))
                .map(|h| format!("{}={}", h.name, String::from_utf8_lossy(h.value.as_deref().unwrap_or_default())))
                .collect();
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
            letters.push(format!("{topic} key {key}: {}", causes.join(" ")));
        }
    }
    totals.dead_letters = letters.len();
    for letter in &letters {
        eprintln!("chaos: dead letter: {letter}");
    }
    checks.push(check(
        "dead-letter topics empty",
        letters.is_empty(),
        format!("{} dead letter(s) on {} topics{}", letters.len(), dead_letter_topics.len(), first(&letters)),
    ));
    Ok((checks, totals))
}

fn count<K: Ord>(items: impl Iterator<Item = K>) -> BTreeMap<K, usize> {
    let mut out = BTreeMap::new();
    for k in items {
        *out.entry(k).or_default() += 1;
    }
    out
}

/// GETs `path` until `done(body)` or 60 s (the tables catch up after the drain); the last body.
async fn get_until(addr: SocketAddr, path: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(10), request(addr, "GET", path, &[], b"")).await;
        let body = match answer {
            Ok(Ok((200, body))) => body,
            other => format!("{other:?}"),
        };
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        // A table view has no change notification for clients: poll.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Where an answer of /analytics/top-products differs from the truth: each
/// product whose (units, revenue) is not the truth's, as answer vs truth.
fn top_products_diff(
    answer: Option<BTreeMap<String, (i64, Decimal)>>,
    truth: &BTreeMap<String, (i64, Decimal)>,
) -> String {
    let Some(answer) = answer else { return "is not the expected JSON".into() };
    let products: BTreeSet<&String> = answer.keys().chain(truth.keys()).collect();
    let differing: Vec<String> = products
        .into_iter()
        .filter(|p| answer.get(*p) != truth.get(*p))
        .map(|p| format!("{p}: {:?} vs truth {:?}", answer.get(p), truth.get(p)))
        .collect();
    format!("differs: {}", differing.join("; "))
}

/// GET /analytics/top-products as product -> (units, revenue).
fn top_products(body: &str) -> Option<BTreeMap<String, (i64, Decimal)>> {
    let rows: Vec<Value> = serde_json::from_str(body).ok()?;
    rows.iter()
        .map(|r| {
            let revenue = r["total_revenue"].as_str()?.parse().ok()?;
            Some((r["product_id"].as_str()?.to_string(), (r["total_quantity"].as_i64()?, revenue)))
        })
        .collect()
}

/// GET /analytics/orders summed over the windows: (orders, revenue).
fn order_metrics(body: &str) -> Option<(i64, Decimal)> {
    let rows: Vec<Value> = serde_json::from_str(body).ok()?;
    rows.iter().try_fold((0, Decimal::ZERO), |(count, sum), r| {
        Some((count + r["order_count"].as_i64()?, sum + r["total_revenue"].as_str()?.parse::<Decimal>().ok()?))
    })
}
