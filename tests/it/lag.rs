//! The lag from committed offsets with no replica running: `kfn lag --json`
//! (the CLI, as a person or a script runs it) and the exporter of
//! `kfn_committed_lag` a running replica starts for all partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kfn::kafka::group::coordinator::{Generation, GroupClient};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn::metrics::Metrics;
use kfn_functions::events::OrderCreated;

/// A function `f` reading a two-partition input, its topics created, its
/// group with 4 committed on partition 0 and nothing on partition 1; 10
/// records on partition 0, 6 on partition 1. Returns (dir, function, input).
async fn stopped_function() -> (tempfile::TempDir, String, String) {
    let function = kfn_tests::unique("lagf");
    let input = kfn_tests::unique("lag-in");
    let (out, dlq) = (kfn_tests::unique("lag-out"), kfn_tests::unique("lag-dlq"));
    for (topic, partitions) in [(&input, 2), (&out, 1), (&dlq, 1)] {
        kfn_tests::create_topic(topic, partitions).await.expect("topic");
    }
    let brokers: Vec<String> = kfn_tests::bootstrap().iter().map(|b| format!("{b:?}")).collect();
    let toml = format!(
        "[runtime]\nbrokers = [{}]\n\n\
         [topics.\"{input}\"]\npartitions = 2\nreplication = 1\nschema = \"schemas/order_created.avsc\"\n\n\
         [topics.\"{out}\"]\npartitions = 1\nreplication = 1\nschema = \"schemas/order_created.avsc\"\n\n\
         [topics.\"{dlq}\"]\npartitions = 1\nreplication = 1\n\n\
         [functions.{function}]\nhandler = \"passthrough\"\ninput = \"{input}\"\n\
         outputs = {{ out = \"{out}\" }}\ndead_letter = \"{dlq}\"\n",
        brokers.join(", ")
    );
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("functions.toml"), toml).expect("write functions.toml");
    std::fs::create_dir(dir.path().join("schemas")).expect("schemas/");
    let schema = kfn_tests::workspace_root().join("schemas/order_created.avsc");
    std::fs::copy(schema, dir.path().join("schemas/order_created.avsc")).expect("copy the schema");

    let cluster = kfn_tests::cluster();
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("producer");
    let records =
        |n: usize| (0..n).map(|i| ProducerRecord::new(None, Some(Bytes::from(format!("r{i}"))), 0)).collect::<Vec<_>>();
    producer.send(&TopicPartition::new(input.clone(), 0), records(10)).await.expect("produce p0");
    producer.send(&TopicPartition::new(input.clone(), 1), records(6)).await.expect("produce p1");
    // A standalone commit (generation -1), as a stopped replica would have left.
    let generation = Generation { id: -1, member_id: String::new(), protocol: String::new() };
    let offsets = BTreeMap::from([(TopicPartition::new(input.clone(), 0), 4)]);
    let mut client = GroupClient::new(cluster, format!("kfn.{function}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // A new group's coordinator may still be loading (COORDINATOR_LOAD_IN_PROGRESS): ask again.
    while let Err(e) = client.commit(&generation, &offsets).await {
        assert!(e.is_retriable() && tokio::time::Instant::now() < deadline, "commit: {e}");
        client.reset_coordinator();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (dir, function, input)
}

#[tokio::test]
async fn kfn_lag_reports_end_minus_committed_with_no_replica_running() {
    let (dir, function, input) = stopped_function().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kfn-test-replica"))
        .args(["lag", "--json", "--function", &function, "--config"])
        .arg(dir.path().join("functions.toml"))
        .output()
        .await
        .expect("run kfn lag");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kfn lag failed: {stderr}");
    let lags: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        lags,
        serde_json::json!([{
            "function": function,
            "group": format!("kfn.{function}"),
            "partitions": [
                {"topic": input, "partition": 0, "committed": 4, "from": 4, "end": 10, "lag": 6},
                // Nothing committed: counted from the earliest offset.
                {"topic": input, "partition": 1, "committed": null, "from": 0, "end": 6, "lag": 6},
            ],
        }])
    );

    let table = tokio::process::Command::new(env!("CARGO_BIN_EXE_kfn-test-replica"))
        .args(["lag", "--config"])
        .arg(dir.path().join("functions.toml"))
        .output()
        .await
        .expect("run kfn lag");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    assert!(text.contains("nothing committed: from earliest 0"), "{text}");
    let total = text.lines().find(|l| l.contains("(total)")).expect("a total line");
    assert!(total.split_whitespace().eq([function.as_str(), "(total)", "12"]), "{text}");
}

#[tokio::test]
async fn the_exporter_reports_partitions_no_replica_holds() {
    let (dir, function, input) = stopped_function().await;
    // The handler kfn-test-replica registers under the same name.
    let mut handlers = kfn_sdk::Registry::default();
    handlers.handler("passthrough", |_ctx, order: OrderCreated| async move {
        Ok(kfn_sdk::Emit::one("out", order.order_id.clone(), order))
    });
    let config = kfn::config::Config::load_file_only(&dir.path().join("functions.toml"), &handlers).expect("config");
    let spec = config.functions.get(&function).expect("the function").clone();
    let metrics = Metrics::new();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let exporter = tokio::spawn(kfn::lag::export_every(
        kfn_tests::cluster(),
        vec![spec],
        config.runtime.isolation,
        metrics.clone(),
        Duration::from_millis(100),
        shutdown,
    ));
    let sample = |p: i32| format!("kfn_committed_lag{{function=\"{function}\",topic=\"{input}\",partition=\"{p}\"}} ");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics.render();
        if text.contains(&sample(0)) && text.contains(&sample(1)) {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "no kfn_committed_lag for both partitions:\n{text}");
        // The exporter offers no notification; its first round runs at once.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for p in [0, 1] {
        let line = text.lines().find(|l| l.starts_with(&sample(p))).expect("sample");
        assert_eq!(line.rsplit(' ').next(), Some("6"), "{line}");
    }
    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), exporter).await.expect("the exporter stops").expect("join");
}

/// `kfn offsets reset` with `args` on the function of `dir`: (success, stdout, stderr).
async fn reset(dir: &tempfile::TempDir, function: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kfn-test-replica"))
        .args(["offsets", "reset", "--function", function, "--config"])
        .arg(dir.path().join("functions.toml"))
        .args(args)
        .output()
        .await
        .expect("run kfn offsets reset");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test]
async fn offsets_reset_moves_a_stopped_group_and_refuses_a_running_one() {
    let (dir, function, input) = stopped_function().await;
    let cluster = kfn_tests::cluster();
    let group = format!("kfn.{function}");
    let partitions = [TopicPartition::new(input.clone(), 0), TopicPartition::new(input.clone(), 1)];
    let committed = || {
        let (cluster, group, partitions) = (cluster.clone(), group.clone(), partitions.clone());
        async move {
            let found = GroupClient::new(cluster, group).committed(&partitions).await.expect("committed");
            partitions.iter().map(|tp| found.get(tp).copied()).collect::<Vec<_>>()
        }
    };

    // A dry run prints the moves and commits nothing.
    let (ok, out, err) = reset(&dir, &function, &["--to", "earliest"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{input}/0  4 -> 0")), "{out}");
    assert!(out.contains(&format!("{input}/1  (nothing committed) -> 0")), "{out}");
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(committed().await, [Some(4), None]);

    let (ok, out, err) = reset(&dir, &function, &["--to", "earliest", "--execute"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(committed().await, [Some(0), Some(0)]);

    // An offset past a partition's end is kept at the end (partition 1 has 6 records).
    let (ok, out, err) = reset(&dir, &function, &["--to", "7", "--execute"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(committed().await, [Some(7), Some(6)]);

    let (ok, out, err) = reset(&dir, &function, &["--to", "latest", "--execute"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(committed().await, [Some(10), Some(6)]);

    // A member holds the group: refused, naming the group.
    let member = kfn_tests::group::TestMember::start(&cluster, &group, &input, "m", Default::default());
    kfn_tests::group::await_members(&[&member], Duration::from_secs(60), "the member joins", |now| now[0].len() == 2)
        .await;
    let (ok, _, err) = reset(&dir, &function, &["--to", "earliest", "--execute"]).await;
    assert!(!ok, "a reset of a running group was accepted");
    assert!(err.contains(&format!("group {group} has 1 active member(s)")), "{err}");
    member.stop().await;
    assert_eq!(committed().await, [Some(10), Some(6)], "the refused reset committed nothing");
}
