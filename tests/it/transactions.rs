//! Transactions written by clients we did not write, read by a kfn function:
//! what confluent-kafka's (librdkafka) and Apache Kafka's Java transactional
//! producers abort never reaches a handler, and records behind a transaction
//! that is still open wait at the last stable offset until it ends.
//!
//! On Apache Kafka this exercises the broker's side of read_committed: the
//! fetch stops at the last stable offset while a transaction is open, and
//! answers aborted records with the aborted-transaction list (kfn drops them
//! by that list and by the markers). On tansu only the markers apply.

use std::time::Duration;

use kfn_sdk::{Ctx, Emit, Registry};
use kfn_tests::app::{Item, Recorder, TestApp, ITEM_TOPIC};
use kfn_tests::peer::{PeerClient, TxnPeer};

/// Waits until the function's lag on `in-{s}` partition 0 reaches `at_least`: a
/// fetch has seen records beyond the position it may hand out.
async fn await_lag(app: &TestApp, at_least: f64) {
    let (function, topic) = (app.name("seen-{s}"), app.name("in-{s}"));
    let sample = format!("kfn_consumer_lag{{function=\"{function}\",topic=\"{topic}\",partition=\"0\"}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lag = app.metric(&sample);
        if lag >= at_least {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sample} stayed at {lag}, expected at least {at_least}");
        // The metric has no change notification; poll it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn aborted_transactions_never_reach_a_handler(client: PeerClient) {
    let seen = Recorder::<String>::new();
    let mut handlers = Registry::default();
    let recorder = seen.clone();
    handlers.handler("record", move |_ctx: Ctx, item: Item| {
        let recorder = recorder.clone();
        async move {
            recorder.push(item.id);
            Ok(Emit::none())
        }
    });
    let toml = format!(
        "{ITEM_TOPIC}\n[topics.\"dlq-{{s}}\"]\npartitions = 1\nreplication = 1\n\n\
         [functions.seen-{{s}}]\nhandler = \"record\"\ninput = \"in-{{s}}\"\ndead_letter = \"dlq-{{s}}\"\n"
    );
    let app = TestApp::start(&toml, handlers).await.expect("app starts");
    let input = app.name("in-{s}");
    let encode = |id: &str| app.encode(&input, &Item::new(id, 0, "ok")).expect("encode");
    let mut peer = TxnPeer::start(client, kfn_tests::broker(), &input, &kfn_tests::unique("peer-txn"))
        .await
        .expect("transactional peer");

    // Committed, aborted, committed: only the committed ones may be handled.
    for (txn, ids, end) in
        [(1, ["c1-a", "c1-b"], "commit"), (2, ["x2-a", "x2-b"], "abort"), (3, ["c3-a", "c3-b"], "commit")]
    {
        peer.command("begin").await.expect("begin");
        for id in ids {
            peer.send(0, id, &encode(id)).await.unwrap_or_else(|e| panic!("send in transaction {txn}: {e:#}"));
        }
        peer.command("flush").await.expect("flush");
        peer.command(end).await.expect(end);
    }
    seen.wait_until("the committed records", |s| s.len() >= 4).await.expect("committed records handled");

    // A transaction left open in the log, with plain records behind it.
    peer.command("begin").await.expect("begin");
    for id in ["open-a", "open-b"] {
        peer.send(0, id, &encode(id)).await.expect("send");
    }
    peer.command("flush").await.expect("flush");
    for id in ["after-a", "after-b", "after-c"] {
        app.produce(&input, id, &Item::new(id, 0, "ok")).await.expect("produce behind the open transaction");
    }
    if !kfn_tests::on_tansu() {
        // Apache Kafka holds the fetch at the last stable offset: the five records behind it
        // count as lag while none of them is handed out.
        await_lag(&app, 5.0).await;
    }
    let while_open = seen.events();
    assert_eq!(while_open, ["c1-a", "c1-b", "c3-a", "c3-b"], "handled while a transaction was open before them");

    peer.command("abort").await.expect("abort");
    let all = seen.wait_until("the records behind the aborted transaction", |s| s.len() >= 7).await.expect("after");
    assert_eq!(all, ["c1-a", "c1-b", "c3-a", "c3-b", "after-a", "after-b", "after-c"]);
    peer.finish().await.expect("peer exits");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_librdkafka_aborts_never_reaches_a_handler() {
    aborted_transactions_never_reach_a_handler(PeerClient::Librdkafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_java_client_aborts_never_reaches_a_handler() {
    aborted_transactions_never_reach_a_handler(PeerClient::Java).await;
}
