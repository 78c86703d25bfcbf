//! Sending ACLs to the brokers: CreateAcls and DescribeAcls.
//!
//! CreateAcls goes out as [`CreateAcls`], kafka-protocol's request in a
//! wrapper whose answer also accepts a response without its `results`
//! array. Kafka's spec requires the array, but tansu leaves it out (it stores
//! no ACLs and answers with its default response, whose unset array it does
//! not write at all); kafka-protocol's decoder then runs out of bytes, which
//! would make `kfn acls apply` fail against the local broker with a codec
//! error instead of saying what happened.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange};

use super::{AclBinding, AclError, ResourceType};
use crate::cluster::Cluster;
use crate::error::describe;

/// The CreateAcls request for `bindings`.
pub fn create_request(bindings: &[AclBinding]) -> CreateAclsRequest {
    CreateAclsRequest::default().with_creations(bindings.iter().map(AclBinding::to_creation).collect())
}

/// kafka-protocol's CreateAcls request, answered by a [`CreateAclsAnswer`].
#[derive(Debug, Clone, PartialEq)]
pub struct CreateAcls(pub CreateAclsRequest);

impl Message for CreateAcls {
    const VERSIONS: VersionRange = CreateAclsRequest::VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = CreateAclsRequest::DEPRECATED_VERSIONS;
}

impl Encodable for CreateAcls {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        self.0.encode(buf, version)
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        self.0.compute_size(version)
    }
}

impl Decodable for CreateAcls {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        CreateAclsRequest::decode(buf, version).map(CreateAcls)
    }
}

impl HeaderVersion for CreateAcls {
    fn header_version(version: i16) -> i16 {
        <CreateAclsRequest as HeaderVersion>::header_version(version)
    }
}

impl Request for CreateAcls {
    const KEY: i16 = CreateAclsRequest::KEY;
    type Response = CreateAclsAnswer;
}

/// A CreateAcls response; `results_missing` when the broker sent no
/// `results` array, or a null one (then `response.results` is empty).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateAclsAnswer {
    /// The response as kafka-protocol decodes it.
    pub response: CreateAclsResponse,
    /// The broker sent no per-ACL results at all.
    pub results_missing: bool,
}

impl Message for CreateAclsAnswer {
    const VERSIONS: VersionRange = CreateAclsResponse::VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = CreateAclsResponse::DEPRECATED_VERSIONS;
}

/// Where `results` starts: after the 4-byte throttle time.
const RESULTS_AT: usize = 4;

impl Encodable for CreateAclsAnswer {
    /// Encodes the response; a missing `results` array is left out, as tansu does.
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        let mut body = BytesMut::new();
        self.response.encode(&mut body, version)?;
        if self.results_missing {
            let empty = empty_results(version);
            if body.get(RESULTS_AT..RESULTS_AT + empty.len()) != Some(empty) {
                anyhow::bail!("only an empty results array can be left out");
            }
            let rest = body.split_off(RESULTS_AT + empty.len());
            body.truncate(RESULTS_AT);
            body.extend_from_slice(&rest);
        }
        buf.put_slice(&body);
        Ok(())
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let size = self.response.compute_size(version)?;
        Ok(if self.results_missing { size - empty_results(version).len() } else { size })
    }
}

impl Decodable for CreateAclsAnswer {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        let body = buf.copy_to_bytes(buf.remaining());
        // With its results array the body is at least throttle time + array
        // (+ tagged fields): 8 bytes in v1, 6 from v2 on. Shorter means the
        // array was left out.
        let (flexible, full) = (version >= 2, if version >= 2 { 6 } else { 8 });
        let null = if flexible { &[0u8][..] } else { &[0xffu8, 0xff, 0xff, 0xff][..] };
        let empty = empty_results(version);
        let mut patched = BytesMut::with_capacity(body.len() + empty.len());
        let results_missing = if body.len() >= RESULTS_AT && body.len() < full {
            patched.extend_from_slice(&body[..RESULTS_AT]);
            patched.extend_from_slice(empty);
            patched.extend_from_slice(&body[RESULTS_AT..]);
            true
        } else if body.get(RESULTS_AT..RESULTS_AT + null.len()) == Some(null) {
            // A null array, which the spec does not allow either.
            patched.extend_from_slice(&body[..RESULTS_AT]);
            patched.extend_from_slice(empty);
            patched.extend_from_slice(&body[RESULTS_AT + null.len()..]);
            true
        } else {
            patched.extend_from_slice(&body);
            false
        };
        let response = CreateAclsResponse::decode(&mut patched, version)?;
        Ok(Self { response, results_missing })
    }
}

impl HeaderVersion for CreateAclsAnswer {
    fn header_version(version: i16) -> i16 {
        <CreateAclsResponse as HeaderVersion>::header_version(version)
    }
}

/// An empty results array as encoded at `version`.
fn empty_results(version: i16) -> &'static [u8] {
    if version >= 2 {
        // Compact array: length + 1 as an unsigned varint.
        &[1]
    } else {
        &[0, 0, 0, 0]
    }
}

/// What CreateAcls achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The broker confirmed each ACL.
    Confirmed(usize),
    /// The broker answered without per-ACL results (tansu does: it keeps no
    /// ACLs), so nothing is known to be in place.
    Unconfirmed,
}

/// Which ACLs [`Acls::describe`] lists; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    /// Only this kind of resource.
    pub resource_type: Option<ResourceType>,
    /// Only this resource name (exactly).
    pub resource_name: Option<String>,
    /// Only this principal.
    pub principal: Option<String>,
}

impl AclFilter {
    /// The DescribeAcls request for this filter.
    pub fn to_request(&self) -> DescribeAclsRequest {
        const ANY: i8 = 1;
        DescribeAclsRequest::default()
            .with_resource_type_filter(self.resource_type.map_or(ANY, ResourceType::code))
            .with_resource_name_filter(self.resource_name.clone().map(StrBytes::from_string))
            .with_pattern_type_filter(ANY)
            .with_principal_filter(self.principal.clone().map(StrBytes::from_string))
            .with_host_filter(None)
            .with_operation(ANY)
            .with_permission_type(ANY)
    }
}

/// ACL administration on a cluster.
#[derive(Clone)]
pub struct Acls {
    cluster: Cluster,
}

impl Acls {
    /// ACL administration on `cluster`.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    /// Creates `bindings` (creating an existing ACL is not an error in Kafka).
    pub async fn create(&self, bindings: &[AclBinding]) -> Result<Applied, AclError> {
        if bindings.is_empty() {
            return Ok(Applied::Confirmed(0));
        }
        let conn = self.cluster.controller().await?;
        let request = CreateAcls(create_request(bindings));
        let version = conn.version::<CreateAcls>()?;
        let answer = conn.send_version(&request, version, Duration::from_secs(30)).await?;
        if answer.results_missing {
            tracing::warn!(
                acls = bindings.len(),
                "the broker answered CreateAcls without results; no ACL is confirmed"
            );
            return Ok(Applied::Unconfirmed);
        }
        let results = &answer.response.results;
        let mut failures: Vec<String> = bindings
            .iter()
            .zip(results)
            .filter(|(_, r)| r.error_code != 0)
            .map(|(binding, r)| {
                let message = r.error_message.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
                format!("{binding}: {}{message}", describe(r.error_code))
            })
            .collect();
        if results.len() != bindings.len() {
            failures.push(format!("the broker answered {} results for {} ACLs", results.len(), bindings.len()));
        }
        if failures.is_empty() {
            tracing::info!(acls = bindings.len(), "ACLs created");
            return Ok(Applied::Confirmed(bindings.len()));
        }
        Err(AclError::Rejected { total: bindings.len(), failures })
    }

    /// The ACLs the broker has that match `filter`.
    pub async fn describe(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, AclError> {
        let conn = self.cluster.any_connection().await?;
        let response = conn.send(&filter.to_request()).await?;
        if response.error_code != 0 {
            let message = response.error_message.map(|m| format!(": {m}")).unwrap_or_default();
            return Err(AclError::Describe { reason: format!("{}{message}", describe(response.error_code)) });
        }
        let mut bindings = Vec::new();
        for resource in &response.resources {
            bindings.extend(AclBinding::from_described(resource)?);
        }
        Ok(bindings)
    }

    /// Waits until the broker lists every one of `bindings` (DescribeAcls),
    /// for at most `limit`; returns whether it did.
    ///
    /// CreateAcls is answered once the controller has written the ACLs to the
    /// metadata log; a broker's authorizer applies them a moment later, and
    /// its DescribeAcls answers from that same state. A client that starts
    /// right after `create` (the registry and the functions of `kfn dev
    /// --secure`) waits here instead of being refused.
    pub async fn wait_listed(&self, bindings: &[AclBinding], limit: Duration) -> Result<bool, AclError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut pauses =
            crate::backoff::Pauses::new(Duration::from_millis(20), Duration::from_millis(200)).until(deadline);
        loop {
            let listed = self.describe(&AclFilter::default()).await?;
            if bindings.iter().all(|b| listed.contains(b)) {
                return Ok(true);
            }
            if !pauses.pause().await {
                return Ok(false);
            }
        }
    }

    /// What the connection's principal may do on each of `topics`, as the
    /// broker's authorizer says (Metadata with `include_topic_authorized_operations`, v8+).
    ///
    /// A topic the principal may not even describe maps to
    /// [`TopicAccess::Hidden`] (TOPIC_AUTHORIZATION_FAILED); a broker
    /// that does not compute the operations (no authorizer, an old version)
    /// gives [`TopicAccess::Unknown`].
    pub async fn topic_access(&self, topics: &[&str]) -> Result<Vec<(String, TopicAccess)>, AclError> {
        let conn = self.cluster.any_connection().await?;
        let request = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false)
            .with_include_topic_authorized_operations(true);
        let version = conn.version::<MetadataRequest>()?;
        if version < 8 {
            return Ok(topics.iter().map(|t| (t.to_string(), TopicAccess::Unknown)).collect());
        }
        let response = conn.send_version(&request, version, Duration::from_secs(30)).await?;
        Ok(response
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                (name, TopicAccess::from_metadata(t.error_code, t.topic_authorized_operations))
            })
            .collect())
    }
}

/// What a principal may do on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicAccess {
    /// These operations (READ and WRITE imply DESCRIBE).
    Allowed(Vec<super::Operation>),
    /// Not even DESCRIBE: the broker hides the topic (TOPIC_AUTHORIZATION_FAILED).
    Hidden,
    /// The topic does not exist (or another error code).
    Missing(i16),
    /// The broker did not say.
    Unknown,
}

/// TOPIC_AUTHORIZATION_FAILED.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

impl TopicAccess {
    /// From a Metadata topic's error code and authorized-operations bit field
    /// (bit `n` set: the operation whose wire code is `n` is allowed).
    pub fn from_metadata(error_code: i16, operations: i32) -> Self {
        match error_code {
            0 if operations == i32::MIN => TopicAccess::Unknown,
            0 => TopicAccess::Allowed(
                super::Operation::ALL.iter().copied().filter(|op| operations & (1 << op.code()) != 0).collect(),
            ),
            TOPIC_AUTHORIZATION_FAILED => TopicAccess::Hidden,
            code => TopicAccess::Missing(code),
        }
    }

    /// Whether `operation` is allowed (true when the broker did not say).
    pub fn allows(&self, operation: super::Operation) -> bool {
        match self {
            TopicAccess::Allowed(ops) => ops.contains(&operation) || ops.contains(&super::Operation::All),
            TopicAccess::Unknown => true,
            TopicAccess::Hidden | TopicAccess::Missing(_) => false,
        }
    }
}
