//! Aggregates against the real broker: state restored from the table topic
//! after a restart, tumbling windows with late records, pull queries, and
//! aggregates that group by a field or a key function through their
//! repartition topic.

use std::collections::BTreeMap;

use bytes::Bytes;
use kfn::kafka::fetch::ConsumedRecord;
use kfn::kafka::producer::ProducerRecord;
use kfn_sdk::{AggCtx, Ctx, Event, FnError, Registry};
use kfn_tests::app::{Item, TestApp};

/// The state of the test folds: how many items, and the sum of their `seq`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    key: String,
    count: i64,
    sum: i64,
}

impl Event for Tally {
    const NAME: &'static str = "kfn.test.Tally";
}

const TALLY_SCHEMA: &str = r#"{"type": "record", "name": "Tally", "namespace": "kfn.test", "fields": [
  {"name": "key", "type": "string"},
  {"name": "count", "type": "long"},
  {"name": "sum", "type": "long"}
]}"#;

fn tally(ctx: &AggCtx, state: Option<Tally>, item: Item) -> Result<Tally, FnError> {
    let mut t = state.unwrap_or(Tally { key: ctx.state_key.clone(), count: 0, sum: 0 });
    t.count += 1;
    t.sum += i64::from(item.seq);
    Ok(t)
}

/// The key function of `tally_each`: the item's mode, and "all" (one event, two keys).
fn mode_and_all(_: &Ctx, item: &Item) -> Result<Vec<String>, FnError> {
    Ok(vec![item.mode.clone(), "all".to_string()])
}

fn handlers() -> Registry {
    let mut r = Registry::default();
    r.aggregate("tally", tally).aggregate_by("tally_each", mode_and_all, tally);
    r
}

/// An aggregate `tally-{s}` over `agg-in-{s}` (3 partitions) into `tally-{s}`.
fn topology(extra: &str) -> String {
    format!(
        r#"[topics."agg-in-{{s}}"]
partitions = 3
replication = 1
schema = "schemas/test_item.avsc"

[topics."tally-{{s}}"]
partitions = 3
replication = 1
cleanup_policy = "compact"
schema = "schemas/tally.avsc"

[topics."dlq-{{s}}"]
partitions = 1
replication = 1

[functions.tally-{{s}}]
aggregate = "tally"
input = "agg-in-{{s}}"
outputs = {{ table = "tally-{{s}}" }}
dead_letter = "dlq-{{s}}"
guarantee = "exactly_once"
{extra}
"#
    )
}

async fn start(extra: &str) -> TestApp {
    TestApp::start_with_schemas(&topology(extra), handlers(), &[("tally.avsc", TALLY_SCHEMA)])
        .await
        .expect("app starts")
}

/// Writes `(key, seq, timestamp)` items, one produce call per partition.
async fn produce(app: &TestApp, items: &[(&str, i32, i64)]) {
    let topic = app.name("agg-in-{s}");
    let mut by_partition: BTreeMap<i32, Vec<ProducerRecord>> = BTreeMap::new();
    for (key, seq, ts) in items {
        let value = app.encode(&topic, &Item::new(key, *seq, "ok")).expect("encode");
        let p = app.partition_of(&topic, key.as_bytes()).await.expect("partition");
        by_partition.entry(p).or_default().push(ProducerRecord::new(
            Some(Bytes::from(key.to_string())),
            Some(value),
            *ts,
        ));
    }
    for (p, records) in by_partition {
        app.produce_records(&topic, p, records).await.expect("produce");
    }
}

fn row(app: &TestApp, record: &ConsumedRecord) -> (String, Tally) {
    let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
    let value = record.value.as_deref().expect("a row, not a tombstone");
    let writer = app.app.schemas.try_resolve(value).expect("framed").expect("schema cached");
    (key, writer.decode::<Tally>().expect("a Tally"))
}

/// The latest row of each key, in the order the table holds them.
fn latest(app: &TestApp, records: &[(i32, ConsumedRecord)]) -> BTreeMap<String, Tally> {
    records.iter().map(|(_, r)| row(app, r)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_restarted_mid_stream_resumes_from_its_table() {
    restarted_mid_stream_resumes_from_the_table(None).await;
}

/// A windowed row's key (`<window start>:<key>`) hashes to another partition
/// than its grouping key: the row must still land in its input's partition,
/// where a restart looks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_aggregate_restarted_mid_stream_resumes_from_its_table() {
    restarted_mid_stream_resumes_from_the_table(Some(86_400_000)).await;
}

async fn restarted_mid_stream_resumes_from_the_table(window_ms: Option<i64>) {
    let keys = ["a", "b", "c", "d", "e", "f", "g"];
    // One timestamp for all: every record falls in one window.
    let now = kfn_tests::app::now_ms();
    let items: Vec<(&str, i32, i64)> = (1..=420).map(|i| (keys[i as usize % keys.len()], i, now)).collect();
    let table_key = |key: &str| match window_ms {
        Some(w) => format!("{}:{key}", now - now.rem_euclid(w)),
        None => key.to_string(),
    };
    let mut expected: BTreeMap<String, Tally> = BTreeMap::new();
    for (key, seq, _) in &items {
        let t = expected.entry(table_key(key)).or_insert(Tally { key: table_key(key), count: 0, sum: 0 });
        t.count += 1;
        t.sum += i64::from(*seq);
    }
    let app = start(&window_ms.map(|w| format!("window = \"{}ms\"\ngrace = \"1h\"", w)).unwrap_or_default()).await;
    let table = app.name("tally-{s}");
    // The first half in small produce calls, so the app is mid-stream when it stops.
    for chunk in items[..210].chunks(15) {
        produce(&app, chunk).await;
    }
    app.watch(&table).await.expect("watch").wait_for_count(1).await.expect("first rows");
    // A new App: nothing of the old one's memory; the state must come from the table.
    let app = app.restart(handlers()).await.expect("restart");
    for chunk in items[210..].chunks(15) {
        produce(&app, chunk).await;
    }
    let mut watcher = app.watch(&table).await.expect("watch");
    let records = watcher
        .wait_until("the totals of every key", |records| latest(&app, records) == expected)
        .await
        .expect("final totals")
        .to_vec();
    // Exactly once: each key's rows count 1, 2, 3, ... with no count folded twice.
    let mut counts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, r) in &records {
        let (key, t) = row(&app, r);
        counts.entry(key).or_default().push(t.count);
    }
    for (key, seen) in counts {
        let n = expected[&key].count;
        assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "rows of key {key}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_fold_separately_and_late_records_are_counted_not_merged() {
    const HOUR: i64 = 3_600_000;
    const MINUTE: i64 = 60_000;
    let h = 472_222 * HOUR; // an hour boundary in 2023
    let app = start("window = \"1h\"\ngrace = \"5m\"").await;
    produce(
        &app,
        &[
            ("k", 1, h + 1_000),
            ("k", 2, h + 2_000),
            ("k", 10, h + HOUR + 10),
            // Window h ended 10 ms ago in stream time: within grace, merged.
            ("k", 3, h + 3_000),
            ("k", 20, h + 2 * HOUR + 6 * MINUTE),
            // Stream time - grace is h + 2h + 1m: windows h and h + 1h are closed.
            ("k", 100, h + 59 * MINUTE),
            ("k", 50, h + HOUR + 30 * MINUTE),
            ("k", 7, h + 2 * HOUR + 7 * MINUTE),
        ],
    )
    .await;
    let expected: BTreeMap<String, Tally> = [(h, 3, 6), (h + HOUR, 1, 10), (h + 2 * HOUR, 2, 27)]
        .into_iter()
        .map(|(start, count, sum)| {
            let key = format!("{start}:k");
            (key.clone(), Tally { key, count, sum })
        })
        .collect();
    let mut watcher = app.watch(&app.name("tally-{s}")).await.expect("watch");
    watcher.wait_until("one row per window", |records| latest(&app, records) == expected).await.expect("windows");
    // The last record came after the late ones in the same partition: they were seen.
    let late = app.metric(&format!("kfn_late_events_total{{function=\"{}\"}}", app.name("tally-{s}")));
    assert_eq!(late, 2.0);
    // Rows carry the event time of the record folded last, not the wall clock.
    let last = watcher.records.iter().map(|(_, r)| r.timestamp_ms).max().expect("rows");
    assert_eq!(last, h + 2 * HOUR + 7 * MINUTE);
    app.stop().await;
}

/// Two aggregates over items keyed by their id (2 partitions) into tables of
/// 3 partitions: `by_mode` groups by the field `mode`, `each` by a key
/// function giving the mode and "all". kfn derives and creates their
/// repartition topics; the totals are right and, exactly once, each key's
/// rows count 1, 2, 3, ...
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_group_by_a_field_or_a_key_function_of_records_keyed_by_something_else() {
    let topology = r#"[topics."items-{s}"]
partitions = 2
replication = 1
schema = "schemas/test_item.avsc"

[topics."by-mode-{s}"]
partitions = 3
replication = 1
cleanup_policy = "compact"
schema = "schemas/tally.avsc"

[topics."each-{s}"]
partitions = 3
replication = 1
cleanup_policy = "compact"
schema = "schemas/tally.avsc"

[functions.by_mode-{s}]
aggregate = "tally"
group_by = "mode"
input = "items-{s}"
outputs = { table = "by-mode-{s}" }
guarantee = "exactly_once"

[functions.each-{s}]
aggregate = "tally_each"
input = "items-{s}"
outputs = { table = "each-{s}" }
"#;
    let app =
        TestApp::start_with_schemas(topology, handlers(), &[("tally.avsc", TALLY_SCHEMA)]).await.expect("app starts");
    let by_mode = app.name("by_mode-{s}");
    let repartition = &app.app.config.topics[&format!("{by_mode}.repartition")];
    assert_eq!(repartition.partitions, 3, "the internal topic is partitioned like the table");
    let modes = ["red", "green", "blue"];
    let items: Vec<(String, i32, &str)> = (1..=90).map(|i| (format!("item-{i}"), i, modes[i as usize % 3])).collect();
    let input = app.name("items-{s}");
    let mut by_partition: BTreeMap<i32, Vec<ProducerRecord>> = BTreeMap::new();
    for (id, seq, mode) in &items {
        let value = app.encode(&input, &Item::new(id, *seq, mode)).expect("encode");
        let p = app.partition_of(&input, id.as_bytes()).await.expect("partition");
        let record = ProducerRecord::new(Some(Bytes::from(id.clone())), Some(value), kfn_tests::app::now_ms());
        by_partition.entry(p).or_default().push(record);
    }
    assert_eq!(by_partition.len(), 2, "the items are spread over both input partitions");
    for (p, records) in by_partition {
        for chunk in records.chunks(10) {
            app.produce_records(&input, p, chunk.to_vec()).await.expect("produce");
        }
    }
    let mut expected: BTreeMap<String, Tally> = BTreeMap::new();
    for (_, seq, mode) in &items {
        let t = expected.entry(mode.to_string()).or_insert(Tally { key: mode.to_string(), count: 0, sum: 0 });
        t.count += 1;
        t.sum += i64::from(*seq);
    }
    assert_eq!(expected.values().map(|t| t.count).collect::<Vec<_>>(), [30, 30, 30]);
    let mut watcher = app.watch(&app.name("by-mode-{s}")).await.expect("watch");
    let records =
        watcher.wait_until("the totals per mode", |r| latest(&app, r) == expected).await.expect("totals").to_vec();
    let mut counts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, r) in &records {
        let (key, t) = row(&app, r);
        counts.entry(key).or_default().push(t.count);
    }
    for (key, seen) in counts {
        assert_eq!(seen, (1..=30).collect::<Vec<_>>(), "rows of mode {key}: each item folded once");
    }

    let all = Tally { key: "all".into(), count: 90, sum: (1..=90).sum() };
    expected.insert("all".into(), all);
    let mut watcher = app.watch(&app.name("each-{s}")).await.expect("watch");
    watcher.wait_until("the totals per mode and of all", |r| latest(&app, r) == expected).await.expect("totals");
    app.stop().await;
}

/// A GET over a fresh connection: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Polls `path` until `done(status, body)` holds (the view follows the table by a fetch).
pub async fn http_until(addr: std::net::SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + kfn_tests::app::DEADLINE;
    loop {
        let (status, body) = http_get(addr, path).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(tokio::time::Instant::now() < deadline, "GET {path}: still {status} {body}");
        // The view offers no change notification over HTTP; poll it briefly.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_query_serves_every_row_and_one_row_by_key() {
    let app = start("query = { http = { path = \"/tally\" } }").await;
    let now = kfn_tests::app::now_ms();
    produce(&app, &[("x", 1, now), ("y", 2, now), ("x", 3, now), ("z", 4, now)]).await;
    let addr = app.http_addr().expect("the trigger serves the query");
    let (_, body) = http_until(addr, "/tally/x", |status, body| status == 200 && body.contains("\"count\":2")).await;
    let x: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(x, serde_json::json!({"key": "x", "count": 2, "sum": 4}));
    let (_, body) = http_until(addr, "/tally", |_, body| {
        serde_json::from_str::<Vec<serde_json::Value>>(body).is_ok_and(|rows| rows.len() == 3)
    })
    .await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON array");
    let expected =
        [("x", 2, 4), ("y", 1, 2), ("z", 1, 4)].map(|(k, c, s)| serde_json::json!({"key": k, "count": c, "sum": s}));
    assert_eq!(rows, expected);
    let (status, _) = http_get(addr, "/tally/nobody").await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// Loads the aggregate's topology (with `{s}` = "x") after `edit`, expecting an error on `field` mentioning `expected`.
fn assert_config_error(edit: impl Fn(String) -> String, field: &str, expected: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("schemas")).expect("mkdir");
    std::fs::write(dir.path().join("schemas/test_item.avsc"), kfn_tests::app::ITEM_SCHEMA).expect("write");
    std::fs::write(dir.path().join("schemas/tally.avsc"), TALLY_SCHEMA).expect("write");
    let path = dir.path().join("functions.toml");
    let text = edit(topology("").replace("{s}", "x"));
    std::fs::write(&path, &text).expect("write");
    let mut registry = handlers();
    registry.handler("plain", |_ctx, item: Item| async move { Ok(kfn_sdk::Emit::one("table", item.id.clone(), item)) });
    let err = kfn::config::Config::load_file_only(&path, &registry).expect_err("the broken config was accepted");
    let Some(found) = err.errors().iter().find(|e| e.field == field) else {
        panic!("no error on {field}:\n{err}\n{text}")
    };
    assert!(found.message.contains(expected), "error on {field} says {:?}, expected {expected:?}", found.message);
}

#[test]
fn an_aggregate_table_must_be_compacted_and_partitioned_like_its_input() {
    let field = "functions.tally-x.outputs.table";
    assert_config_error(|t| t.replace("cleanup_policy = \"compact\"\n", ""), field, "cleanup_policy = \"compact\"");
    assert_config_error(
        |t| t.replacen("partitions = 3", "partitions = 2", 1),
        field,
        "as many partitions as the input",
    );
    assert_config_error(
        |t| t.replace("outputs = { table = \"tally-x\" }", "outputs = { table = \"tally-x\", more = \"tally-x\" }"),
        "functions.tally-x.outputs",
        "exactly one output named `table`",
    );
    assert_config_error(
        |t| t.replace("aggregate = \"tally\"", "aggregate = \"nope\""),
        "functions.tally-x.aggregate",
        "registered",
    );
    assert_config_error(
        |t| t.replace("aggregate = \"tally\"", "handler = \"plain\"\nwindow = \"1h\""),
        "functions.tally-x.window",
        "only an aggregate",
    );
    assert_config_error(|t| t + "window = \"soon\"\n", "functions.tally-x.window", "expected");
    assert_config_error(
        |t| t + "group_by = \"colour\"\n",
        "functions.tally-x.group_by",
        "expected a field of kfn.test.Item, the events of \"agg-in-x\", found \"colour\" (its fields: id, seq, mode)",
    );
}
