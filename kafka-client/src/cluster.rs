//! The cluster as kfn sees it: bootstrap, metadata, leaders, coordinators,
//! and a pool of connections that are replaced when they fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::conn::{ConnectOptions, Connection, Dial, WeakConnection};
use super::error::KafkaError;
use super::fetch::broker::{FetchSlot, FetcherKey, Fetchers};
use super::group::protocol::TopicPartition;

/// What FindCoordinator looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordinatorKind {
    /// A consumer group's coordinator.
    Group = 0,
    /// A transactional id's coordinator.
    Transaction = 1,
}

/// One partition's place in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The leader's broker id (-1 when leaderless).
    pub leader: i32,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
}

/// A topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic id (all zero on brokers without ids).
    pub id: uuid::Uuid,
    /// Partitions by index.
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Default)]
struct State {
    brokers: HashMap<i32, String>,
    topics: HashMap<String, TopicInfo>,
    connections: HashMap<String, Connection>,
    /// Connections opened for one user ([`Cluster::open`]), while they live.
    opened: Vec<WeakConnection>,
    controller: Option<i32>,
    /// Coordinators found, by kind and key, until told they moved.
    coordinators: HashMap<(CoordinatorKind, String), String>,
}

/// A handle on the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    bootstrap: Vec<String>,
    options: ConnectOptions,
    state: Mutex<State>,
    /// Serialises connection opening so concurrent callers share one connection per broker.
    opening: tokio::sync::Mutex<()>,
    /// One fetcher per leader (and fetch settings), shared by the partition readers.
    fetchers: Fetchers,
}

impl Cluster {
    /// A cluster reachable through `bootstrap` (host:port list); connects lazily.
    pub fn new(bootstrap: Vec<String>, options: ConnectOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                bootstrap,
                options,
                state: Mutex::new(State::default()),
                opening: tokio::sync::Mutex::new(()),
                fetchers: Fetchers::default(),
            }),
        }
    }

    /// The connection options every connection uses.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.options
    }

    /// A live connection to `addr`, opening one if needed.
    pub async fn connection(&self, addr: &str) -> Result<Connection, KafkaError> {
        if let Some(conn) = self.cached(addr) {
            return Ok(conn);
        }
        let _guard = self.inner.opening.lock().await;
        if let Some(conn) = self.cached(addr) {
            return Ok(conn);
        }
        let conn = Connection::connect(addr, &self.inner.options).await?;
        self.state().connections.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    fn cached(&self, addr: &str) -> Option<Connection> {
        let mut state = self.state();
        match state.connections.get(addr) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                state.connections.remove(addr);
                None
            }
            None => None,
        }
    }

    /// Any live connection: a known broker, else a bootstrap address.
    ///
    /// Authentication failures end the search at once: every broker would
    /// refuse the same credentials, and retrying them is a storm, not a cure.
    pub async fn any_connection(&self) -> Result<Connection, KafkaError> {
        let mut candidates: Vec<String> = self.state().brokers.values().cloned().collect();
        candidates.sort();
        candidates.extend(self.inner.bootstrap.iter().cloned());
        let mut last = None;
        for addr in candidates {
            match self.connection(&addr).await {
                Ok(conn) => return Ok(conn),
                Err(e @ (KafkaError::AuthenticationFailed { .. } | KafkaError::Security(_))) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| KafkaError::Disconnected {
            broker: "(none)".into(),
            reason: "no bootstrap brokers configured".into(),
        }))
    }

    /// A connection to the broker with this id.
    pub async fn broker(&self, id: i32) -> Result<Connection, KafkaError> {
        let addr = self.state().brokers.get(&id).cloned();
        let addr = match addr {
            Some(a) => a,
            None => {
                self.refresh(&[]).await?;
                self.state().brokers.get(&id).cloned().ok_or_else(|| KafkaError::Disconnected {
                    broker: format!("broker id {id}"),
                    reason: "not in the cluster metadata".into(),
                })?
            }
        };
        self.connection(&addr).await
    }

    /// Fetches metadata for `topics` (all topics when empty) and caches it.
    pub async fn refresh(&self, topics: &[&str]) -> Result<Vec<TopicInfo>, KafkaError> {
        let conn = self.any_connection().await?;
        let request = MetadataRequest::default().with_topics(if topics.is_empty() {
            None
        } else {
            Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                    })
                    .collect(),
            )
        });
        let response = conn.send(&request).await?;
        let mut found = Vec::new();
        let mut state = self.state();
        for b in &response.brokers {
            state.brokers.insert(b.node_id.0, format!("{}:{}", b.host, b.port));
        }
        state.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        for t in response.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                state.topics.remove(&name);
                if !topics.is_empty() {
                    return Err(KafkaError::Broker {
                        api: "Metadata",
                        code: t.error_code,
                        context: format!("topic {name}"),
                    });
                }
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = TopicInfo { name: name.clone(), id: t.topic_id, partitions };
            state.topics.insert(name, info.clone());
            found.push(info);
        }
        Ok(found)
    }

    /// The cached metadata of a topic, fetching it if unknown.
    pub async fn topic(&self, name: &str) -> Result<TopicInfo, KafkaError> {
        if let Some(info) = self.state().topics.get(name).cloned() {
            return Ok(info);
        }
        self.refresh(&[name]).await?.into_iter().next().ok_or_else(|| KafkaError::Broker {
            api: "Metadata",
            code: ResponseError::UnknownTopicOrPartition.code(),
            context: format!("topic {name}"),
        })
    }

    /// Forgets cached metadata of a topic (after NOT_LEADER and the like).
    pub fn invalidate(&self, topic: &str) {
        self.state().topics.remove(topic);
    }

    /// A connection to the leader of a partition.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Connection, KafkaError> {
        let info = self.topic(topic).await?;
        let leader = info.partitions.iter().find(|p| p.partition == partition).map(|p| p.leader).unwrap_or(-1);
        if leader < 0 {
            self.invalidate(topic);
            return Err(KafkaError::Broker {
                api: "Metadata",
                code: ResponseError::LeaderNotAvailable.code(),
                context: format!("partition {topic}/{partition}"),
            });
        }
        self.broker(leader).await
    }

    /// A connection to the controller (admin requests).
    pub async fn controller(&self) -> Result<Connection, KafkaError> {
        self.refresh(&[]).await?;
        let controller = self.state().controller;
        match controller {
            Some(id) => self.broker(id).await,
            None => self.any_connection().await,
        }
    }

    /// Opens a connection of its own to `addr`, shared with no one.
    ///
    /// Brokers answer one request of a connection at a time, in order, so a
    /// long poll (JoinGroup, a Fetch waiting for records) holds up everything
    /// behind it: group members and partition readers get connections of
    /// their own, while short requests share the pool.
    pub async fn open(&self, addr: &str) -> Result<Connection, KafkaError> {
        let conn = Connection::connect(addr, &self.inner.options).await?;
        let mut state = self.state();
        state.opened.retain(WeakConnection::is_live);
        state.opened.push(conn.downgrade());
        Ok(conn)
    }

    /// A partition reader's place in the fetcher of its leader: readers of
    /// one broker (with the same fetch settings) share one connection and one
    /// Fetch request (see [`super::fetch::broker`]).
    pub fn fetch_slot(&self, key: FetcherKey, tp: TopicPartition) -> FetchSlot {
        FetchSlot::open(Arc::new(self.clone()), &self.inner.fetchers, key, tp)
    }

    /// How many broker connections of this cluster handle are open: the
    /// shared pool and those opened for one user (group members, fetchers).
    pub fn connection_count(&self) -> usize {
        let mut state = self.state();
        state.opened.retain(WeakConnection::is_live);
        let pooled = state.connections.values().filter(|c| !c.is_closed()).count();
        pooled + state.opened.len()
    }

    /// host:port of the leader of a partition.
    pub async fn leader_addr(&self, topic: &str, partition: i32) -> Result<String, KafkaError> {
        let info = self.topic(topic).await?;
        let leader = info.partitions.iter().find(|p| p.partition == partition).map(|p| p.leader).unwrap_or(-1);
        let addr = self.state().brokers.get(&leader).cloned();
        match addr {
            Some(addr) if leader >= 0 => Ok(addr),
            _ => {
                self.invalidate(topic);
                Err(KafkaError::Broker {
                    api: "Metadata",
                    code: ResponseError::LeaderNotAvailable.code(),
                    context: format!("partition {topic}/{partition}"),
                })
            }
        }
    }

    /// A connection to the coordinator of a group or transactional id.
    pub async fn coordinator(&self, kind: CoordinatorKind, key: &str) -> Result<Connection, KafkaError> {
        let addr = self.coordinator_addr(kind, key).await?;
        self.connection(&addr).await
    }

    /// host:port of the coordinator of a group or transactional id: the one
    /// found before, until [`Cluster::forget_coordinator`].
    ///
    /// Looking it up retries what the broker says will pass
    /// (COORDINATOR_NOT_AVAILABLE while Apache Kafka creates
    /// `__consumer_offsets` or `__transaction_state` on first use,
    /// COORDINATOR_LOAD_IN_PROGRESS after a failover) for up to the request
    /// timeout.
    pub async fn coordinator_addr(&self, kind: CoordinatorKind, key: &str) -> Result<String, KafkaError> {
        use backon::Retryable;
        if let Some(addr) = self.state().coordinators.get(&(kind, key.to_string())) {
            return Ok(addr.clone());
        }
        let backoff = crate::backoff::within(self.options().request_timeout);
        let addr = (|| self.find_coordinator(kind, key)).retry(backoff).when(KafkaError::is_retriable).await?;
        self.state().coordinators.insert((kind, key.to_string()), addr.clone());
        Ok(addr)
    }

    /// Forgets the coordinator found for `key` (it answered NOT_COORDINATOR,
    /// or could not be reached): the next request looks it up again.
    ///
    /// Every transaction asks its coordinators several times; looking them up
    /// each time doubled the requests a transaction cost the broker.
    pub fn forget_coordinator(&self, kind: CoordinatorKind, key: &str) {
        self.state().coordinators.remove(&(kind, key.to_string()));
    }

    async fn find_coordinator(&self, kind: CoordinatorKind, key: &str) -> Result<String, KafkaError> {
        let conn = self.any_connection().await?;
        let version = conn.version::<FindCoordinatorRequest>()?;
        let key_bytes = StrBytes::from_string(key.to_string());
        let mut request = FindCoordinatorRequest::default().with_key_type(kind as i8);
        if version >= 4 {
            request.coordinator_keys = vec![key_bytes];
        } else {
            request.key = key_bytes;
        }
        let response = conn.send_version(&request, version, Duration::ZERO).await?;
        let (code, node, host, port) = if version >= 4 {
            let c = response.coordinators.first().ok_or_else(|| KafkaError::Codec {
                api: "FindCoordinator",
                message: "no coordinator in the answer".into(),
            })?;
            (c.error_code, c.node_id, c.host.to_string(), c.port)
        } else {
            (response.error_code, response.node_id, response.host.to_string(), response.port)
        };
        KafkaError::check("FindCoordinator", code, || format!("{kind:?} {key}"))?;
        let addr = format!("{host}:{port}");
        self.state().brokers.insert(node.0, addr.clone());
        Ok(addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Dial for Cluster {
    fn dial<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<Connection, KafkaError>> {
        Box::pin(self.open(addr))
    }
}
