//! Sending ACLs to the brokers: CreateAcls and DescribeAcls.
//!
//! CreateAcls goes out as [`CreateAcls`], kafka-protocol's request in a
//! wrapper whose answer also accepts a null `results` array. Kafka's spec
//! does not allow one, but tansu sends it (it stores no ACLs and answers with
//! an empty default response); kafka-protocol's decoder rejects it, which
//! would make `kfn acls apply` fail against the local broker with a codec
//! error instead of saying what happened.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest};
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange};

use super::{AclBinding, AclError, ResourceType};
use crate::kafka::cluster::Cluster;
use crate::kafka::error::describe;

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

/// A CreateAcls response; `results_missing` when the broker sent a null
/// `results` array (then `response.results` is empty).
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

impl Encodable for CreateAclsAnswer {
    /// Encodes the response; a missing `results` array is written as null,
    /// as tansu does.
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        let mut body = BytesMut::new();
        self.response.encode(&mut body, version)?;
        if self.results_missing {
            null_results(&mut body, version)?;
        }
        buf.put_slice(&body);
        Ok(())
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        self.response.compute_size(version)
    }
}

impl Decodable for CreateAclsAnswer {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        let mut body = BytesMut::from(buf.copy_to_bytes(buf.remaining()).as_ref());
        // results follows the 4-byte throttle time.
        let results_missing = if version >= 2 {
            // Compact array: length + 1 as an unsigned varint; 0 = null, 1 = empty.
            let null = body.get(4) == Some(&0);
            if null {
                body[4] = 1;
            }
            null
        } else {
            // Classic array: i32 length; -1 = null.
            let null = body.get(4..8) == Some(&(-1i32).to_be_bytes()[..]);
            if null {
                body[4..8].copy_from_slice(&0i32.to_be_bytes());
            }
            null
        };
        let response = CreateAclsResponse::decode(&mut body, version)?;
        Ok(Self { response, results_missing })
    }
}

impl HeaderVersion for CreateAclsAnswer {
    fn header_version(version: i16) -> i16 {
        <CreateAclsResponse as HeaderVersion>::header_version(version)
    }
}

/// Rewrites the (empty) results array of an encoded CreateAcls response as null.
fn null_results(body: &mut BytesMut, version: i16) -> anyhow::Result<()> {
    let empty = if version >= 2 { &[1u8][..] } else { &[0u8, 0, 0, 0][..] };
    let null = if version >= 2 { &[0u8][..] } else { &[0xffu8, 0xff, 0xff, 0xff][..] };
    match body.get_mut(4..4 + empty.len()) {
        Some(slot) if slot == empty => {
            slot.copy_from_slice(null);
            Ok(())
        }
        _ => anyhow::bail!("only an empty results array can be written as null"),
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
            tracing::warn!(acls = bindings.len(), "the broker answered CreateAcls without results; no ACL is confirmed");
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
}
