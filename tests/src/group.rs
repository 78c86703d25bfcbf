//! A plain group consumer for the group tests: a [`GroupMember`] whose
//! listener reads each assigned partition from its committed offset, records
//! what it saw, and commits after every batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use kfn::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use kfn::kafka::fetch::Isolation;
use kfn::kafka::group::coordinator::{Generation, GroupClient};
use kfn::kafka::group::member::{GroupMember, MemberConfig, MemberState, RebalanceListener};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::Cluster;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records consumed by every member of a test, by (partition, offset) -> value.
pub type Seen = Arc<Mutex<BTreeMap<(i32, i64), Vec<String>>>>;

/// A running reader: its stop signal and task.
type Reader = (watch::Sender<bool>, JoinHandle<()>);

struct Listener {
    cluster: Cluster,
    group: String,
    state: Arc<std::sync::RwLock<MemberState>>,
    seen: Seen,
    member: String,
    readers: Mutex<HashMap<TopicPartition, Reader>>,
}

impl RebalanceListener for Listener {
    fn assigned<'a>(&'a self, _g: &'a Generation, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut readers = self.readers.lock().expect("lock");
            for tp in partitions {
                let (stop_tx, stop) = watch::channel(false);
                let handle = tokio::spawn(read(
                    self.cluster.clone(),
                    self.group.clone(),
                    self.state.clone(),
                    tp.clone(),
                    self.seen.clone(),
                    self.member.clone(),
                    stop,
                ));
                readers.insert(tp.clone(), (stop_tx, handle));
            }
        })
    }

    fn revoked<'a>(&'a self, _g: &'a Generation, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let taken: Vec<_> = {
                let mut readers = self.readers.lock().expect("lock");
                partitions.iter().filter_map(|tp| readers.remove(tp)).collect()
            };
            for (stop, handle) in taken {
                let _ = stop.send(true);
                let _ = handle.await;
            }
        })
    }

    fn lost<'a>(&'a self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut readers = self.readers.lock().expect("lock");
            for tp in partitions {
                if let Some((_, handle)) = readers.remove(tp) {
                    handle.abort();
                }
            }
        })
    }
}

async fn read(
    cluster: Cluster,
    group: String,
    state: Arc<std::sync::RwLock<MemberState>>,
    tp: TopicPartition,
    seen: Seen,
    member: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = GroupClient::new(cluster.clone(), group);
    let start = match client.committed(std::slice::from_ref(&tp)).await {
        Ok(c) => match c.get(&tp) {
            Some(o) => *o,
            None => list_offset(&cluster, &tp, LogEnd::Earliest, Isolation::ReadCommitted).await.unwrap_or(0),
        },
        Err(_) => return,
    };
    let mut reader = PartitionReader::new(cluster, tp.clone(), start, Isolation::ReadCommitted, LogEnd::Earliest);
    loop {
        let batch = tokio::select! {
            b = reader.next() => b,
            _ = stop.changed() => return,
        };
        let Ok(batch) = batch else { continue };
        if batch.records.is_empty() {
            continue;
        }
        {
            let mut seen = seen.lock().expect("lock");
            for r in &batch.records {
                let value = r.value.as_ref().map(|v| String::from_utf8_lossy(v).to_string()).unwrap_or_default();
                seen.entry((tp.partition, r.offset)).or_default().push(format!("{member}:{value}"));
            }
        }
        let generation = state.read().expect("lock").generation.clone();
        if let Some(generation) = generation {
            let _ = client.commit(&generation, &BTreeMap::from([(tp.clone(), batch.next_fetch_offset)])).await;
        }
    }
}

/// A running test member.
pub struct TestMember {
    /// Its name in [`Seen`] values.
    pub name: String,
    /// The member's state (generation and partitions).
    pub state: Arc<std::sync::RwLock<MemberState>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    listener: Arc<Listener>,
}

impl TestMember {
    /// Starts a member of `group` reading `topic`.
    pub fn start(cluster: &Cluster, group: &str, topic: &str, name: &str, seen: Seen) -> Self {
        let member = GroupMember::new(
            cluster.clone(),
            MemberConfig {
                group: group.to_string(),
                topics: vec![topic.to_string()],
                session_timeout: Duration::from_secs(6),
                rebalance_timeout: Duration::from_secs(10),
                heartbeat_interval: Duration::from_millis(500),
            },
        );
        let state = member.state();
        let listener = Arc::new(Listener {
            cluster: cluster.clone(),
            group: group.to_string(),
            state: state.clone(),
            seen,
            member: name.to_string(),
            readers: Mutex::default(),
        });
        let (shutdown, rx) = watch::channel(false);
        let running = listener.clone();
        let task = tokio::spawn(async move {
            let _ = member.run(running, rx).await;
        });
        Self { name: name.to_string(), state, shutdown, task, listener }
    }

    /// The partitions the member holds now.
    pub fn partitions(&self) -> BTreeSet<i32> {
        let state = self.state.read().expect("lock");
        if state.generation.is_none() {
            return BTreeSet::new();
        }
        state.partitions.iter().map(|tp| tp.partition).collect()
    }

    /// Stops cleanly: revoke (commit) and LeaveGroup.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Stops like a crash: no commit, no LeaveGroup; its heartbeats just end.
    pub fn kill(self) {
        self.task.abort();
        for (_, (_, reader)) in self.listener.readers.lock().expect("lock").drain() {
            reader.abort();
        }
    }
}

/// Waits (polling the members' state; no fixed sleep) until `check` holds, or panics after `limit`.
pub async fn await_members(
    members: &[&TestMember],
    limit: Duration,
    what: &str,
    check: impl Fn(&[BTreeSet<i32>]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let now: Vec<_> = members.iter().map(|m| m.partitions()).collect();
        if check(&now) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not reached within {limit:?}; assignments now {now:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
