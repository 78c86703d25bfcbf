//! The dashboards and alerts against a real Prometheus (Debian's package)
//! scraping the order system while orders flow and faults are made: every
//! panel query of dashboards/*.json returns series, every alert rule of
//! dashboards/alerts.yml evaluates without error, a poison record fires
//! KfnDeadLetters, and stopping the replica makes KfnNoReadyReplica pending.
//! The replica logs as JSON lines (`KFN_LOG_FORMAT=json`), which are checked too.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn_tests::order_system::{request, OrderSystem};
use serde_json::Value;

use crate::order_system::ONE_AT_A_TIME;

/// Prometheus, stopped when the test ends.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, with kfn's alert rules.
    async fn start(target: SocketAddr) -> anyhow::Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let rules = kfn_tests::workspace_root().join("dashboards/alerts.yml");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: kfn\n    static_configs: [{{targets: [\"{target}\"]}}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], kfn::dev::ports::free_port()?));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log"))?)
            .spawn()
            .context("starting prometheus (Debian: apt-get install prometheus; .ci/run installs it)")?;
        let prometheus = Prometheus { child, addr, _dir: dir };
        // Ready is not scraping: Prometheus applies discovered targets every
        // 5 s, and a counter's first step before the first scrape is invisible
        // to increase(). Wait for a scrape of kfn.
        prometheus
            .until("Prometheus scrapes kfn", |p| async move {
                let up = p.query(r#"up{job="kfn"}"#).await.unwrap_or_default();
                Ok(up.first().is_some_and(|s| s["value"][1] == "1"))
            })
            .await?;
        Ok(prometheus)
    }

    /// GET an API path; its `data`, or the error Prometheus gave.
    async fn api(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = request(self.addr, "GET", path, &[], b"").await?;
        let answer: Value = serde_json::from_str(&body).with_context(|| format!("{path}: {status} {body}"))?;
        if answer["status"] != "success" {
            bail!("{path}: {status} {body}");
        }
        Ok(answer["data"].clone())
    }

    /// The instant result of a PromQL query.
    async fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(promql))).await?;
        data["result"].as_array().cloned().ok_or_else(|| anyhow!("{promql}: no result array in {data}"))
    }

    /// The alerts now pending or firing: (name, state, labels).
    async fn alerts(&self) -> anyhow::Result<Vec<(String, String, Value)>> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or_default().to_string();
                (name, a["state"].as_str().unwrap_or_default().to_string(), a["labels"].clone())
            })
            .collect())
    }

    /// Polls `check` (Prometheus has no change notification) until it holds, for at most two minutes.
    async fn until<'a, F, Fut>(&'a self, what: &str, check: F) -> anyhow::Result<()>
    where
        F: Fn(&'a Prometheus) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let last = check(self).await;
            if matches!(last, Ok(true)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{what}: not within 120 s (last: {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every (dashboard file, panel title, query) of dashboards/*.json, with the
/// dashboard variables filled in as Grafana would.
fn panel_queries(function: &str) -> Vec<(String, String, String)> {
    let dir = kfn_tests::workspace_root().join("dashboards");
    let mut queries = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("dashboards/").flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for panel in board["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let expr = expr.replace("$__rate_interval", "1m").replace("$function", function);
                queries.push((file.clone(), panel["title"].as_str().unwrap_or_default().to_string(), expr));
            }
        }
    }
    queries
}

async fn place_orders(http: SocketAddr, n: usize) -> anyhow::Result<()> {
    let body = r#"{"customer_id":"c-obs","items":[{"product_id":"SKU-001","quantity":1,"unit_price":"19.99"}],"shipping_address":"1 Main St"}"#;
    for _ in 0..n {
        let (status, answer) =
            request(http, "POST", "/orders", &[("Content-Type", "application/json")], body.as_bytes()).await?;
        if status != 202 {
            bail!("POST /orders: {status} {answer}");
        }
    }
    // One refused request, so the HTTP panels have a 4xx series too.
    request(http, "POST", "/orders", &[("Content-Type", "application/json")], b"{").await?;
    Ok(())
}

/// For the pictures of docs/operations.md (`scripts/render-panels`): orders
/// at a steady rate with a burst in the middle for `KFN_PANELS_SECONDS`
/// (default 120), then each panel's series over that time, one JSON file per
/// panel in `dir`: {dashboard, title, unit, series: [{legend, points: [[t, v]]}]}.
async fn record_panels(prometheus: &Prometheus, http: SocketAddr, dir: &Path) -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("KFN_PANELS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let start = kfn_sdk::now_ms() / 1000;
    eprintln!("observability: {seconds} s of orders for the panels");
    for tick in 0..seconds * 4 {
        // 8 orders/s, 40/s during the middle fifth (a burst the lag panel shows).
        let burst = (seconds * 2..seconds * 2 + seconds * 4 / 5).contains(&(tick * 2));
        place_orders(http, if burst { 10 } else { 2 }).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let end = kfn_sdk::now_ms() / 1000;
    std::fs::create_dir_all(dir)?;
    let root = kfn_tests::workspace_root().join("dashboards");
    for file in ["orders-overview.json", "function.json", "http.json"] {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(root.join(file))?)?;
        for panel in board["panels"].as_array().into_iter().flatten() {
            let mut series = Vec::new();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let expr = expr.replace("$__rate_interval", "15s").replace("$function", "payment");
                let path = format!("/api/v1/query_range?query={}&start={start}&end={end}&step=2", encode(&expr));
                for s in prometheus.api(&path).await?["result"].as_array().into_iter().flatten() {
                    let mut legend = target["legendFormat"].as_str().unwrap_or_default().to_string();
                    for (name, value) in s["metric"].as_object().into_iter().flatten() {
                        legend = legend.replace(&format!("{{{{{name}}}}}"), value.as_str().unwrap_or_default());
                    }
                    series.push(serde_json::json!({ "legend": legend, "points": s["values"] }));
                }
            }
            let out = serde_json::json!({
                "dashboard": board["title"], "title": panel["title"],
                "unit": panel["fieldConfig"]["defaults"]["unit"], "series": series,
            });
            let name = format!("{}-{:02}.json", file.trim_end_matches(".json"), panel["id"].as_u64().unwrap_or(0));
            std::fs::write(dir.join(name), serde_json::to_string_pretty(&out)?)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboards_and_alerts_work_on_a_real_prometheus() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    let json_logs = [("KFN_LOG_FORMAT", "json")];
    let mut system = OrderSystem::start_with_env(binary, 1, &json_logs).await.expect("the order system starts");
    let prometheus = Prometheus::start(system.admin[0]).await.expect("prometheus starts");

    place_orders(system.http[0], 20).await.expect("orders accepted");
    // A poison record: not Avro, so validation dead-letters it as undecodable.
    let producer = Producer::new(system.cluster().clone(), ProducerConfig::default()).await.expect("producer");
    let poison = ProducerRecord::new(Some("poison".into()), Some("not avro".into()), kfn_sdk::now_ms());
    producer.send(&TopicPartition::new("orders.created", 0), vec![poison]).await.expect("the poison record is written");

    prometheus
        .until("orders through, a dead letter, transactions, every function ready: scraped", |p| async move {
            let dispatched = p.query(r#"sum(kfn_invocations_total{function="warehouse",outcome="ok"})"#).await?;
            let dead = p.query(r#"sum(kfn_dead_letters_total{function="validation"})"#).await?;
            let value =
                |r: &[Value]| r.first().and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok()).unwrap_or(0.0);
            let committed =
                p.query(r#"sum(kfn_transactions_total{function="validation",outcome="committed"})"#).await?;
            let ready = p.query("count(kfn_function_ready == 1) == count(kfn_function_ready)").await?;
            Ok(value(&dispatched) >= 1.0 && value(&dead) >= 1.0 && value(&committed) >= 1.0 && value(&ready) >= 1.0)
        })
        .await
        .expect("the scrape sees the orders, the dead letter, committed transactions and every function ready");

    // Every panel query parses and returns series (the rates once a minute of scrapes is in).
    let queries = panel_queries("validation");
    assert!(queries.len() >= 20, "dashboards/ has {} queries", queries.len());
    let all_answer = prometheus
        .until("every panel query returns series", |p| {
            let queries = queries.clone();
            async move {
                for (_, _, expr) in &queries {
                    if p.query(expr).await?.is_empty() {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        })
        .await;
    if all_answer.is_err() {
        let mut empty = Vec::new();
        for (file, title, expr) in &queries {
            match prometheus.query(expr).await {
                Ok(result) if result.is_empty() => empty.push(format!("{file} / {title}: {expr}: no series")),
                Ok(_) => {}
                Err(e) => empty.push(format!("{file} / {title}: {e}")),
            }
        }
        panic!("panel queries without series:\n{}", empty.join("\n"));
    }

    // Every alert rule evaluates without error.
    let rules = prometheus.api("/api/v1/rules").await.expect("rules");
    let mut evaluated = 0;
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            prometheus
                .until(&format!("rule {} evaluated", rule["name"]), |p| {
                    let name = rule["name"].clone();
                    async move {
                        let rules = p.api("/api/v1/rules").await?;
                        let found = rules["groups"][0]["rules"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|r| r["name"] == name)
                            .cloned()
                            .unwrap_or_default();
                        if found["health"] == "err" {
                            bail!("{name}: {}", found["lastError"]);
                        }
                        Ok(found["health"] == "ok")
                    }
                })
                .await
                .expect("the rule evaluates");
            evaluated += 1;
        }
    }
    assert_eq!(evaluated, 9, "dashboards/alerts.yml has 9 alerts");

    // The poison record fires KfnDeadLetters, naming function and reason.
    prometheus
        .until("KfnDeadLetters firing for validation/undecodable", |p| async move {
            Ok(p.alerts().await?.iter().any(|(name, state, labels)| {
                name == "KfnDeadLetters"
                    && state == "firing"
                    && labels["function"] == "validation"
                    && labels["reason"] == "undecodable"
            }))
        })
        .await
        .expect("KfnDeadLetters fires");

    if let Some(dir) = std::env::var_os("KFN_PANELS_OUT") {
        record_panels(&prometheus, system.http[0], Path::new(&dir)).await.expect("panels recorded");
    }

    // KFN_LOG_FORMAT=json: every line of the replica's log is a JSON object
    // with its fields at the top level.
    let log = std::fs::read_to_string(system.dir.join("replica-0.log")).expect("the replica's log");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let assigned = lines
        .iter()
        .find(|l| l["message"] == "partitions assigned" && l["group"] == "kfn.validation")
        .unwrap_or_else(|| panic!("no JSON line for validation's assignment in {} lines", lines.len()));
    assert_eq!(assigned["level"], "INFO", "{assigned}");
    // The generation (classic protocol) or member epoch (consumer protocol) the partitions came with.
    let generation = assigned["generation"].is_number() || assigned["epoch"].is_number();
    assert!(assigned["timestamp"].is_string() && generation, "{assigned}");

    // Every replica stopped: KfnNoReadyReplica becomes pending (it fires after 2 minutes).
    system.kill_replicas();
    prometheus
        .until("KfnNoReadyReplica pending", |p| async move {
            Ok(p.alerts().await?.iter().any(|(name, _, _)| name == "KfnNoReadyReplica"))
        })
        .await
        .expect("KfnNoReadyReplica is pending once the replica is gone");
    system.stop().await;
}
