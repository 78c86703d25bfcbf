//! The faults, one at a time, each followed by its recovery.
//!
//! Recovery time: from the fault until every function has committed past
//! everything that was in its inputs when the fault ended (the log ends,
//! read_committed, at the moment the process was back, the link up, the
//! broker or the registry restarted). Orders keep arriving during the run, so
//! "lag zero" is never seen under load; "caught up with the backlog the fault
//! left" is the same measure taken against a moving log. After the load ends,
//! the runner waits for every lag to reach exactly zero ([`Lag::await_zero`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kfn::config::FunctionSpec;
use kfn::kafka::fetch::Isolation;
use kfn::kafka::lag::PartitionLag;
use kfn::kafka::Cluster;

use crate::load::{self, Ledger, OrderRequest};
use crate::system::{signal, System};

/// How the faults are sized.
#[derive(Debug, Clone)]
pub struct Plan {
    /// kill -9s of a function replica (alternating between the two).
    pub kills: usize,
    /// How long the zombie stays stopped (past the session timeout).
    pub stop_for: Duration,
    /// How long the isolated replica is cut off.
    pub cut_for: Duration,
    /// How long the registry is down.
    pub registry_down_for: Duration,
    /// Orders sent to the HTTP replica that is killed mid-request.
    pub burst: usize,
    /// How long a recovery may take before the runner records "not recovered" and goes on.
    pub recovery_limit: Duration,
}

/// What one fault did and how long the system took to recover.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// Which fault.
    pub name: String,
    /// What was hit, and what was seen.
    pub detail: String,
    /// Seconds since the load started.
    pub at: f64,
    /// From the fault until every function caught up with the backlog it left; None: not within the limit.
    pub recovery: Option<Duration>,
    /// Orders sent between the fault and the recovery.
    pub orders_during: u64,
    /// A check of the fault's own (the zombie fenced, the cut-off replica back): passed, and why.
    pub check: Option<(bool, String)>,
}

/// Where each partition of each function's inputs ends: (function, topic, partition) -> offset.
type Ends = BTreeMap<(String, String, i32), i64>;

/// The committed lag (read_committed) of every topic function, from the brokers
/// (`kfn lag`'s machinery: the groups' committed offsets against the log ends).
pub struct Lag {
    cluster: Cluster,
    functions: Vec<FunctionSpec>,
}

impl Lag {
    /// A lag reader of `functions`.
    pub fn new(cluster: Cluster, functions: Vec<FunctionSpec>) -> Lag {
        Lag { cluster, functions }
    }

    /// Every partition of every function now; an error while the brokers cannot answer (a node down).
    async fn partitions(&self) -> anyhow::Result<Vec<(String, PartitionLag)>> {
        let mut out = Vec::new();
        for spec in &self.functions {
            let lag = kfn::lag::function_lag(&self.cluster, spec, Isolation::ReadCommitted).await?;
            out.extend(lag.partitions.into_iter().map(|p| (spec.name.clone(), p)));
        }
        Ok(out)
    }

    /// Each function's total lag now.
    pub async fn totals(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        for (f, p) in self.partitions().await? {
            *out.entry(f).or_default() += p.lag;
        }
        Ok(out)
    }

    /// Called when a fault is over: takes the log ends, then waits until every
    /// function committed past them. The time since `since`, or None after `limit`.
    pub async fn await_recovered(&self, since: Instant, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        let ends: Ends = loop {
            match self.partitions().await {
                Ok(ps) => break ps.into_iter().map(|(f, p)| ((f, p.topic, p.partition), p.end)).collect(),
                Err(e) if Instant::now() > deadline => {
                    eprintln!("chaos: the brokers gave no log ends within {limit:?}: {e:#}");
                    return None;
                }
                // A node may still be electing leaders: ask again.
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        let mut behind = Vec::new();
        while Instant::now() < deadline {
            if let Ok(ps) = self.partitions().await {
                behind = ps
                    .into_iter()
                    .filter(|(f, p)| {
                        ends.get(&(f.clone(), p.topic.clone(), p.partition)).is_some_and(|end| p.from < *end)
                    })
                    .map(|(f, p)| format!("{f} {}-{}", p.topic, p.partition))
                    .collect();
                if behind.is_empty() {
                    return Some(since.elapsed());
                }
            }
            // Polled: the brokers offer no notification of a group's progress.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("chaos: not caught up within {limit:?}; still behind: {behind:?}");
        None
    }

    /// Waits until every function's lag is zero (the run drained); the time since `since`, or None after `limit`.
    pub async fn await_zero(&self, since: Instant, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            match self.totals().await {
                Ok(lags) if lags.values().all(|lag| *lag == 0) => return Some(since.elapsed()),
                Ok(lags) => last = Some(lags),
                Err(_) => {}
            }
            // Polled: the brokers offer no notification of a group's progress.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("chaos: lag not zero within {limit:?}; last seen {last:?}");
        None
    }
}

/// Lines of `log` past byte `from` that show a member losing its place: its
/// transactional producer fenced, its session lost, its partitions revoked.
fn membership_evidence(log: &std::path::Path, from: u64) -> (usize, usize, Vec<String>) {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    let (mut fenced, mut lost, mut lines) = (0, 0, Vec::new());
    for line in tail.lines() {
        let is_fenced = line.contains("fenced");
        let is_lost =
            line.contains("session lost") || line.contains("UnknownMemberId") || line.contains("IllegalGeneration");
        fenced += usize::from(is_fenced);
        lost += usize::from(is_lost);
        if (is_fenced || is_lost) && lines.len() < 2 {
            lines.push(strip_ansi(line).chars().take(200).collect());
        }
    }
    (fenced, lost, lines)
}

/// `line` without terminal colour sequences (`ESC [ ... m`), for the report.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence, its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn log_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Runs the faults of `plan` in order; prints each as it ends.
pub async fn run_all(
    system: &mut System,
    lag: &Lag,
    ledger: &Arc<Ledger>,
    targets: &[SocketAddr],
    plan: &Plan,
    t0: Instant,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    let mut push = |record: FaultRecord| {
        let recovery = record.recovery.map_or("not recovered".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
        eprintln!("chaos: fault {} ({}) at {:.0} s: recovered in {recovery}", record.name, record.detail, record.at);
        if let Some((ok, why)) = &record.check {
            eprintln!("chaos:   check {}: {why}", if *ok { "passed" } else { "FAILED" });
        }
        records.push(record);
    };
    let limit = plan.recovery_limit;
    let ready = Duration::from_secs(300);

    // 1. kill -9 of a function replica, restarted at once.
    for i in 0..plan.kills {
        let n = i % system.replicas.len();
        let (start, sent) = (Instant::now(), ledger.sent());
        system.kill_replica(n);
        let restarted = match system.start_replica(n) {
            Ok(()) => system.await_ready(n, ready).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let recovery = lag.await_recovered(start, limit).await;
        push(FaultRecord {
            name: format!("kill -9 replica ({}/{})", i + 1, plan.kills),
            detail: format!("replica {n}"),
            at: start.duration_since(t0).as_secs_f64(),
            recovery,
            orders_during: ledger.sent() - sent,
            check: restarted.err().map(|e| (false, format!("restart: {e}"))),
        });
    }

    // 2. SIGSTOP past the session timeout, then SIGCONT: the zombie.
    {
        let n = 0;
        let (start, sent) = (Instant::now(), ledger.sent());
        let check = match system.replicas[n].pid() {
            Some(pid) => {
                signal(pid, libc::SIGSTOP);
                tokio::time::sleep(plan.stop_for).await;
                let from = log_len(&system.replicas[n].log);
                signal(pid, libc::SIGCONT);
                let back = system.await_ready(n, ready).await;
                let recovery = lag.await_recovered(start, limit).await;
                let (fenced, lost, lines) = membership_evidence(&system.replicas[n].log, from);
                let alive = system.alive(n);
                let ok = back.is_ok() && alive && fenced + lost > 0;
                let why = format!(
                    "after SIGCONT its log shows {fenced} fenced producer line(s) and {lost} lost-session line(s); \
                     ready again: {}; process alive: {alive}; first lines: {lines:?}",
                    back.is_ok()
                );
                Some((recovery, (ok, why)))
            }
            None => None,
        };
        let (recovery, check) = match check {
            Some((r, c)) => (r, Some(c)),
            None => (None, Some((false, "replica 0 was not running".to_string()))),
        };
        push(FaultRecord {
            name: "SIGSTOP replica past its session timeout, then SIGCONT".into(),
            detail: format!("replica {n}, stopped {:.0} s (session timeout 6 s)", plan.stop_for.as_secs_f64()),
            at: start.duration_since(t0).as_secs_f64(),
            recovery,
            orders_during: ledger.sent() - sent,
            check,
        });
    }

    // 3. The isolated replica cut off from the brokers.
    if let Some(n) = system.replicas.iter().position(|r| r.isolated) {
        let (start, sent) = (Instant::now(), ledger.sent());
        let from = log_len(&system.replicas[n].log);
        let cut = system.net().map(|net| net.cut());
        tokio::time::sleep(plan.cut_for).await;
        let healed = system.net().map(|net| net.heal());
        let back = system.await_ready(n, ready).await;
        let recovery = lag.await_recovered(start, limit).await;
        let (fenced, lost, lines) = membership_evidence(&system.replicas[n].log, from);
        let alive = system.alive(n);
        let ok = matches!(cut, Some(Ok(()))) && matches!(healed, Some(Ok(()))) && back.is_ok() && alive;
        let why = format!(
            "link down/up: {cut:?}/{healed:?}; ready again: {}; alive: {alive}; its log since the cut: {fenced} fenced, \
             {lost} lost-session line(s); first: {lines:?}",
            back.is_ok()
        );
        push(FaultRecord {
            name: "replica cut off from the brokers (netns link down)".into(),
            detail: format!(
                "replica {n} in namespace {}, {:.0} s",
                system.net().map_or("?", |n| n.name()),
                plan.cut_for.as_secs_f64()
            ),
            at: start.duration_since(t0).as_secs_f64(),
            recovery,
            orders_during: ledger.sent() - sent,
            check: Some((ok, why)),
        });
    } else {
        eprintln!("chaos: no replica runs in a network namespace (not root, or no `ip`): the cut is skipped");
    }

    // 4. kill -9 of the broker leading the most partitions, restarted at once.
    {
        let (start, sent) = (Instant::now(), ledger.sent());
        let (detail, check) = match system.busiest_broker().await {
            Ok(id) => {
                system.kill_broker(id);
                let restarted = system.restart_broker(id).await;
                (
                    format!("node {id}, restarted after {:.1} s", start.elapsed().as_secs_f64()),
                    restarted.err().map(|e| (false, format!("{e:#}"))),
                )
            }
            Err(e) => ("no leader found".into(), Some((false, format!("{e:#}")))),
        };
        let recovery = lag.await_recovered(start, limit).await;
        push(FaultRecord {
            name: "kill -9 the broker leading the most partitions".into(),
            detail,
            at: start.duration_since(t0).as_secs_f64(),
            recovery,
            orders_during: ledger.sent() - sent,
            check,
        });
    }

    // 5. The schema registry down.
    {
        let (start, sent) = (Instant::now(), ledger.sent());
        system.kill_registry();
        tokio::time::sleep(plan.registry_down_for).await;
        let restarted = system.start_registry().await;
        let recovery = lag.await_recovered(start, limit).await;
        push(FaultRecord {
            name: "schema registry down".into(),
            detail: format!("killed, restarted after {:.0} s", plan.registry_down_for.as_secs_f64()),
            at: start.duration_since(t0).as_secs_f64(),
            recovery,
            orders_during: ledger.sent() - sent,
            check: restarted.err().map(|e| (false, format!("restart: {e:#}"))),
        });
    }

    // 6. An HTTP replica killed mid-request; its clients retry with the same key on the other.
    {
        let n = 0;
        let (start, sent) = (Instant::now(), ledger.sent());
        let products = kfn_tests::order_system::seeded_products();
        let burst: Vec<_> = (0..plan.burst)
            .map(|i| {
                let order = OrderRequest::new(format!("h{i:04}"), i, &products);
                let targets = targets.to_vec();
                let ledger = ledger.clone();
                tokio::spawn(async move { load::send(&ledger, &targets, n, order).await })
            })
            .collect();
        // Kill as soon as the first of them is answered: the rest are in flight.
        let first = Instant::now();
        while !ledger.outcomes().keys().any(|k| k.starts_with('h')) && first.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        system.kill_replica(n);
        let mut retried = 0;
        let mut accepted = 0;
        for b in futures::future::join_all(burst).await.into_iter().flatten() {
            retried += usize::from(b.attempts() > 1);
            accepted += usize::from(b.order_id.is_some());
        }
        let restarted = match system.start_replica(n) {
            Ok(()) => system.await_ready(n, ready).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let recovery = lag.await_recovered(start, limit).await;
        push(FaultRecord {
            name: "kill -9 an HTTP replica mid-request".into(),
            detail: format!(
                "replica {n}; {} orders sent to it at once, {accepted} accepted, {retried} retried on the other replica with the same Idempotency-Key",
                plan.burst
            ),
            at: start.duration_since(t0).as_secs_f64(),
            recovery,
            orders_during: ledger.sent() - sent,
            check: restarted.err().map(|e| (false, format!("restart: {e}"))),
        });
    }
    records
}
