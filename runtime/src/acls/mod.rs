//! The ACL plan: what each function of functions.toml needs, computed from
//! its declaration alone (no broker involved).
//!
//! Each function gets exactly what its declaration needs (see [`plan`]):
//! READ on its input topic and on its group `kfn.<function>`, WRITE on its
//! outputs and dead-letter topic, WRITE and DESCRIBE on the transactional ids
//! `kfn.<function>.*` when it runs exactly-once, and IDEMPOTENT_WRITE on the
//! cluster when it produces at all (kfn's producer is idempotent by default).
//!
//! ```
//! use kfn::acls::{plan, Principals};
//! # fn demo(config: &kfn::config::Config) {
//! for binding in plan(config, &Principals::PerFunction) {
//!     println!("{binding}");
//! }
//! # }
//! ```
//!
//! The plan lives here, beside the configuration it reads; [`crate::kafka::acl`]
//! sends the bindings (CreateAcls / DescribeAcls) and knows nothing of functions.

use crate::config::{Config, FunctionSpec, Guarantee};
use crate::kafka::acl::{AclBinding, Operation, PatternType, ResourceType, CLUSTER_RESOURCE};

/// Which user each function authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// Every function uses one user (the `[security].sasl.username` of functions.toml).
    Shared(String),
    /// Each function has its own user `kfn-<function>` (run each function
    /// with `kfn run --only <function>` and
    /// `KFN_SECURITY__SASL__USERNAME=kfn-<function>`): least privilege.
    PerFunction,
}

impl Principals {
    /// The user of `[security].sasl` when there is one, else one user per function.
    pub fn from_config(config: &Config) -> Self {
        match &config.security.sasl {
            Some(sasl) => Principals::Shared(sasl.username.clone()),
            None => Principals::PerFunction,
        }
    }

    /// The principal (`User:<name>`) of `function`.
    pub fn principal(&self, function: &str) -> String {
        match self {
            Principals::Shared(user) => format!("User:{user}"),
            Principals::PerFunction => format!("User:kfn-{function}"),
        }
    }
}

/// The ACLs every function of `config` needs, function by function, without duplicates.
pub fn plan(config: &Config, principals: &Principals) -> Vec<AclBinding> {
    let mut bindings = Vec::new();
    for function in config.functions.values() {
        for binding in function_acls(function, &principals.principal(&function.name)) {
            if !bindings.contains(&binding) {
                bindings.push(binding);
            }
        }
    }
    bindings
}

/// The ACLs of one function running as `principal`.
pub fn function_acls(function: &FunctionSpec, principal: &str) -> Vec<AclBinding> {
    use Operation::{Describe, IdempotentWrite, Read, Write};
    use PatternType::{Literal, Prefixed};
    let mut acls = Vec::new();
    if !function.inputs().is_empty() {
        for input in function.inputs() {
            acls.push(AclBinding::allow(principal, Read, ResourceType::Topic, Literal, input));
        }
        if let Some(delay) = &function.retry.topic {
            acls.push(AclBinding::allow(principal, Read, ResourceType::Topic, Literal, delay));
        }
        acls.push(AclBinding::allow(principal, Read, ResourceType::Group, Literal, &function.group_id()));
    }
    let mut written: Vec<&str> = function.outputs.values().map(String::as_str).collect();
    written.extend(function.dead_letter.as_deref());
    written.extend(function.retry.topic.as_deref());
    for topic in &written {
        let acl = AclBinding::allow(principal, Write, ResourceType::Topic, Literal, topic);
        if !acls.contains(&acl) {
            acls.push(acl);
        }
    }
    if function.guarantee == Guarantee::ExactlyOnce {
        // The worker's transactional ids are kfn.<function>.<topic>.<partition>.
        let prefix = format!("kfn.{}.", function.name);
        acls.push(AclBinding::allow(principal, Write, ResourceType::TransactionalId, Prefixed, &prefix));
        acls.push(AclBinding::allow(principal, Describe, ResourceType::TransactionalId, Prefixed, &prefix));
    }
    if !written.is_empty() {
        // InitProducerId of an idempotent producer; Kafka 3+ also accepts WRITE
        // on a topic, older brokers need this.
        acls.push(AclBinding::allow(principal, IdempotentWrite, ResourceType::Cluster, Literal, CLUSTER_RESOURCE));
    }
    acls
}
