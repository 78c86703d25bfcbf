//! ACLs on the wire: the bindings, and the CreateAcls / DescribeAcls
//! requests that apply and list them.
//!
//! Which function needs which ACL is computed outside the Kafka layer, from
//! functions.toml (the `kfn` crate's `acls` module); this module only sends bindings.
//!
//! Layout: `mod.rs` holds the bindings and their wire codes; `client.rs`
//! sends them, and asks what a principal may do on topics (Metadata's
//! authorized operations). tansu answers CreateAcls without storing or
//! enforcing anything; Apache Kafka with ACLs enforced is where the plan is
//! proven (docs/security.md).

use std::fmt;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::describe_acls_response::DescribeAclsResource;
use kafka_protocol::protocol::StrBytes;

use super::error::KafkaError;

mod client;

pub use client::{create_request, AclFilter, Acls, Applied, CreateAcls, CreateAclsAnswer, TopicAccess};

/// The resource name Kafka gives the cluster in ACLs.
pub const CLUSTER_RESOURCE: &str = "kafka-cluster";

/// What can go wrong applying or listing ACLs.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The request did not get an answer (connection, version, timeout).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The broker refused some ACLs of a CreateAcls request.
    #[error("the broker refused {} of {total} ACLs: {}", failures.len(), failures.join("; "))]
    Rejected {
        /// How many ACLs were sent.
        total: usize,
        /// One line per refused ACL: the binding, the error and its message.
        failures: Vec<String>,
    },
    /// DescribeAcls failed as a whole (e.g. SECURITY_DISABLED when no authorizer is configured).
    #[error("DescribeAcls failed: {reason}")]
    Describe {
        /// The broker's error and message.
        reason: String,
    },
    /// The broker sent an enum value this version of kfn does not know.
    #[error("the broker sent an unknown ACL {what} code {code}")]
    UnknownCode {
        /// Which field (resource type, pattern type, operation, permission).
        what: &'static str,
        /// The value.
        code: i8,
    },
}

/// Generates an enum with Kafka's wire codes and upper-case names.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in wire-code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value on the wire.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)* }
            }

            /// The value for a wire code.
            pub fn from_code(code: i8) -> Result<Self, AclError> {
                match code {
                    $($code => Ok($name::$variant),)*
                    _ => Err(AclError::UnknownCode { what: $what, code }),
                }
            }

            /// Kafka's name (as `kafka-acls.sh` prints it).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// The kind of resource an ACL protects.
    ResourceType, "resource type" {
        /// A topic.
        Topic = 2, "TOPIC";
        /// A consumer group.
        Group = 3, "GROUP";
        /// The cluster (name [`CLUSTER_RESOURCE`]).
        Cluster = 4, "CLUSTER";
        /// A transactional id.
        TransactionalId = 5, "TRANSACTIONAL_ID";
        /// A delegation token.
        DelegationToken = 6, "DELEGATION_TOKEN";
        /// A user (for delegation tokens).
        User = 7, "USER";
    }
);

wire_enum!(
    /// How an ACL's resource name matches.
    PatternType, "pattern type" {
        /// The name exactly.
        Literal = 3, "LITERAL";
        /// Every name starting with it.
        Prefixed = 4, "PREFIXED";
    }
);

wire_enum!(
    /// What an ACL allows or denies.
    Operation, "operation" {
        /// Every operation.
        All = 2, "ALL";
        /// Consume a topic; join and commit in a group.
        Read = 3, "READ";
        /// Produce to a topic; use a transactional id.
        Write = 4, "WRITE";
        /// Create topics.
        Create = 5, "CREATE";
        /// Delete topics or records.
        Delete = 6, "DELETE";
        /// Alter a resource.
        Alter = 7, "ALTER";
        /// Read metadata, offsets, transaction state.
        Describe = 8, "DESCRIBE";
        /// Inter-broker operations.
        ClusterAction = 9, "CLUSTER_ACTION";
        /// Read configs.
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        /// Change configs.
        AlterConfigs = 11, "ALTER_CONFIGS";
        /// Initialise an idempotent producer.
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        /// Create delegation tokens.
        CreateTokens = 13, "CREATE_TOKENS";
        /// Describe delegation tokens.
        DescribeTokens = 14, "DESCRIBE_TOKENS";
        /// Two-phase commit of transactions (KIP-939).
        TwoPhaseCommit = 15, "TWO_PHASE_COMMIT";
    }
);

wire_enum!(
    /// Whether an ACL allows or denies.
    Permission, "permission" {
        /// Deny the operation (wins over allow).
        Deny = 2, "DENY";
        /// Allow the operation.
        Allow = 3, "ALLOW";
    }
);

/// One ACL: `principal` may (or may not) do `operation` on a resource, from `host`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The resource's name (or name prefix).
    pub resource_name: String,
    /// How the name matches.
    pub pattern: PatternType,
    /// Who: `User:<name>`.
    pub principal: String,
    /// From where: `*` for any host.
    pub host: String,
    /// What.
    pub operation: Operation,
    /// Allow or deny.
    pub permission: Permission,
}

impl AclBinding {
    /// An ALLOW from any host.
    pub fn allow(
        principal: &str,
        operation: Operation,
        resource_type: ResourceType,
        pattern: PatternType,
        resource_name: &str,
    ) -> Self {
        Self {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern,
            principal: principal.to_string(),
            host: "*".into(),
            operation,
            permission: Permission::Allow,
        }
    }

    /// The CreateAcls entry of this binding.
    pub fn to_creation(&self) -> AclCreation {
        AclCreation::default()
            .with_resource_type(self.resource_type.code())
            .with_resource_name(StrBytes::from_string(self.resource_name.clone()))
            .with_resource_pattern_type(self.pattern.code())
            .with_principal(StrBytes::from_string(self.principal.clone()))
            .with_host(StrBytes::from_string(self.host.clone()))
            .with_operation(self.operation.code())
            .with_permission_type(self.permission.code())
    }

    /// The binding a CreateAcls entry stands for.
    pub fn from_creation(creation: &AclCreation) -> Result<Self, AclError> {
        Ok(Self {
            resource_type: ResourceType::from_code(creation.resource_type)?,
            resource_name: creation.resource_name.to_string(),
            pattern: PatternType::from_code(creation.resource_pattern_type)?,
            principal: creation.principal.to_string(),
            host: creation.host.to_string(),
            operation: Operation::from_code(creation.operation)?,
            permission: Permission::from_code(creation.permission_type)?,
        })
    }

    /// The bindings of one resource of a DescribeAcls response.
    pub fn from_described(resource: &DescribeAclsResource) -> Result<Vec<Self>, AclError> {
        let resource_type = ResourceType::from_code(resource.resource_type)?;
        let pattern = PatternType::from_code(resource.pattern_type)?;
        resource
            .acls
            .iter()
            .map(|acl| {
                Ok(Self {
                    resource_type,
                    resource_name: resource.resource_name.to_string(),
                    pattern,
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation: Operation::from_code(acl.operation)?,
                    permission: Permission::from_code(acl.permission_type)?,
                })
            })
            .collect()
    }
}

impl fmt::Display for AclBinding {
    /// `User:kfn-validation ALLOW READ on TOPIC orders.created (LITERAL) from *`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} on {} {} ({}) from {}",
            self.principal,
            self.permission,
            self.operation,
            self.resource_type,
            self.resource_name,
            self.pattern,
            self.host
        )
    }
}

#[cfg(test)]
mod tests;
