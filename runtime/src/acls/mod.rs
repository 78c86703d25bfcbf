//! The ACL plan: what each function of functions.toml needs, computed from
//! its declaration alone (no broker involved).
//!
//! Each function gets exactly what its declaration needs (see [`plan`]):
//! READ on its input topic and on its group `kfn.<function>`, WRITE on its
//! outputs and dead-letter topic, WRITE and DESCRIBE on the transactional ids
//! `kfn.<function>.*` when it runs exactly-once (an aggregate that regroups its
//! input also READ on the group `kfn.<function>.repartition` and READ/WRITE on
//! its internal topic `<function>.repartition`), READ and WRITE on its
//! Idempotency-Key topic and the same transactional ids when it is an HTTP
//! function, and IDEMPOTENT_WRITE on the cluster when it produces at all
//! (kfn's producer is idempotent by default).
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
//! [`check`] is the other half: at start-up a function asks the broker what
//! its principal may do and fails with one error naming what is missing.

use crate::config::{function_user, Config, FunctionSpec, Guarantee};
use crate::kafka::acl::{AclBinding, Operation, PatternType, ResourceType, CLUSTER_RESOURCE};

mod check;

pub use check::{check_function, AccessError, Denial};

/// Which user each function authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// Every function uses one user (the `[security].sasl.username` of functions.toml).
    Shared(String),
    /// Each function has its own user `kfn-<function>` (`[security]
    /// per_function = true`, see [`crate::config::function_user`]): least privilege.
    PerFunction,
}

impl Principals {
    /// One user per function with `[security] per_function = true` or without
    /// a SASL user; else the user of `[security].sasl`.
    pub fn from_config(config: &Config) -> Self {
        match &config.security.sasl {
            Some(sasl) if !config.security.per_function => Principals::Shared(sasl.username.clone()),
            _ => Principals::PerFunction,
        }
    }

    /// The principal (`User:<name>`) of `function`.
    pub fn principal(&self, function: &str) -> String {
        match self {
            Principals::Shared(user) => format!("User:{user}"),
            Principals::PerFunction => format!("User:{}", function_user(function)),
        }
    }
}

/// The ACLs of kfn's schema registry running as `principal` on its Kafka
/// topic (`_schemas` by default): it creates the topic if missing (CREATE),
/// writes its changes with an idempotent producer and reads them back (no
/// group: it reads the one partition from offset 0).
pub fn registry_acls(topic: &str, principal: &str) -> Vec<AclBinding> {
    use Operation::{Create, IdempotentWrite, Read, Write};
    use PatternType::Literal;
    vec![
        AclBinding::allow(principal, Create, ResourceType::Topic, Literal, topic),
        AclBinding::allow(principal, Read, ResourceType::Topic, Literal, topic),
        AclBinding::allow(principal, Write, ResourceType::Topic, Literal, topic),
        AclBinding::allow(principal, IdempotentWrite, ResourceType::Cluster, Literal, CLUSTER_RESOURCE),
    ]
}

/// The schema registry's user under [`Principals::PerFunction`].
pub const REGISTRY_USER: &str = "kfn-registry";
/// The registry's topic (kfn's registry and Confluent's default).
pub const REGISTRY_TOPIC: &str = "_schemas";

/// What `kfn acls plan|apply` grants: [`plan`], and with one user per
/// function also the schema registry's own user ([`REGISTRY_USER`]) on its
/// topic ([`registry_acls`]).
pub fn deployment_plan(config: &Config, principals: &Principals) -> Vec<AclBinding> {
    let mut bindings = plan(config, principals);
    if *principals == Principals::PerFunction {
        bindings.extend(registry_acls(REGISTRY_TOPIC, &format!("User:{REGISTRY_USER}")));
    }
    bindings
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
    if let Some(aggregate) = &function.aggregate {
        // An aggregate restores its state by reading its table back (and serves its pull query from it).
        acls.push(AclBinding::allow(principal, Read, ResourceType::Topic, Literal, &aggregate.table));
    }
    if let Some(repartition) = function.repartition() {
        // Its rekey stage writes the internal topic in a group of its own; its fold stage reads it.
        let group = function.repartition_group_id();
        acls.push(AclBinding::allow(principal, Read, ResourceType::Group, Literal, &group));
        acls.push(AclBinding::allow(principal, Read, ResourceType::Topic, Literal, &repartition.topic));
    }
    for table in function.tables.values() {
        // Tables a handler looks up are read whole by every replica (no group).
        let acl = AclBinding::allow(principal, Read, ResourceType::Topic, Literal, table);
        if !acls.contains(&acl) {
            acls.push(acl);
        }
    }
    let keys = function.idempotency_topic();
    if let Some(keys) = &keys {
        // Every replica reads the remembered answers (no group), and writes its own.
        acls.push(AclBinding::allow(principal, Read, ResourceType::Topic, Literal, keys));
    }
    let mut written: Vec<&str> = function.outputs.values().map(String::as_str).collect();
    written.extend(function.repartition().map(|r| r.topic.as_str()));
    written.extend(function.dead_letter.as_deref());
    written.extend(function.retry.topic.as_deref());
    written.extend(keys.as_deref());
    for topic in &written {
        let acl = AclBinding::allow(principal, Write, ResourceType::Topic, Literal, topic);
        if !acls.contains(&acl) {
            acls.push(acl);
        }
    }
    if function.guarantee == Guarantee::ExactlyOnce || keys.is_some() {
        // Granted by prefix: the ids are kfn.<function>.<...> whatever follows (a
        // member's random suffix, <topic>.<partition> with a producer per partition,
        // or http.<random suffix> for an HTTP replica's answers and events).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AggregateSpec, FunctionKind, GroupBy, Ordering, Repartition, RetryPolicy};

    fn function(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            handler: name.into(),
            kind: FunctionKind::Topic { inputs: vec!["in".into()] },
            outputs: [("out".to_string(), "out".to_string())].into_iter().collect(),
            guarantee: Guarantee::AtLeastOnce,
            ordering: Ordering::Partition,
            max_in_flight: 1,
            retry: RetryPolicy::default(),
            dead_letter: Some(format!("{name}.dlq")),
            start_from: None,
            doc: None,
            aggregate: None,
            tables: Default::default(),
        }
    }

    fn lines(acls: &[AclBinding]) -> Vec<String> {
        acls.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_exactly_once_function_with_a_retry_topic_gets_exactly_its_acls() {
        let mut f = function("payment");
        f.guarantee = Guarantee::ExactlyOnce;
        f.retry.topic = Some("payment.retry".into());
        let p = "User:kfn-payment";
        assert_eq!(
            lines(&function_acls(&f, p)),
            [
                format!("{p} ALLOW READ on TOPIC in (LITERAL) from *"),
                format!("{p} ALLOW READ on TOPIC payment.retry (LITERAL) from *"),
                format!("{p} ALLOW READ on GROUP kfn.payment (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC out (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC payment.dlq (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC payment.retry (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TRANSACTIONAL_ID kfn.payment. (PREFIXED) from *"),
                format!("{p} ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.payment. (PREFIXED) from *"),
                format!("{p} ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *"),
            ]
        );
    }

    #[test]
    fn an_http_function_reads_and_writes_its_idempotency_keys_in_transactions() {
        let mut f = function("order_api");
        f.kind = FunctionKind::Http { method: "POST".into(), path: "/orders".into() };
        f.dead_letter = None;
        let p = "User:kfn-order_api";
        assert_eq!(
            lines(&function_acls(&f, p)),
            [
                format!("{p} ALLOW READ on TOPIC order_api.idempotency (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC out (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC order_api.idempotency (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TRANSACTIONAL_ID kfn.order_api. (PREFIXED) from *"),
                format!("{p} ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.order_api. (PREFIXED) from *"),
                format!("{p} ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *"),
            ]
        );
    }

    #[test]
    fn a_function_may_read_the_tables_it_looks_up() {
        let mut f = function("validation");
        f.tables.insert("catalog".into(), "shop.products".into());
        let acls = lines(&function_acls(&f, "User:v"));
        assert!(acls.contains(&"User:v ALLOW READ on TOPIC shop.products (LITERAL) from *".to_string()), "{acls:?}");
        assert!(!acls.iter().any(|a| a.contains("WRITE on TOPIC shop.products")), "{acls:?}");
    }

    #[test]
    fn an_aggregate_may_read_its_table_back() {
        let mut f = function("tracking");
        f.outputs = [("table".to_string(), "orders.status".to_string())].into_iter().collect();
        f.aggregate = Some(AggregateSpec {
            table: "orders.status".into(),
            window: None,
            grace: std::time::Duration::ZERO,
            query_path: None,
            repartition: None,
        });
        let acls = lines(&function_acls(&f, "User:kfn-tracking"));
        for op in ["READ", "WRITE"] {
            let want = format!("User:kfn-tracking ALLOW {op} on TOPIC orders.status (LITERAL) from *");
            assert!(acls.contains(&want), "{want} missing from {acls:#?}");
        }
        assert!(!acls.iter().any(|a| a.contains("repartition")), "{acls:#?}");
    }

    #[test]
    fn an_aggregate_that_regroups_gets_its_rekey_group_and_internal_topic() {
        let mut f = function("sales");
        f.guarantee = Guarantee::ExactlyOnce;
        f.outputs = [("table".to_string(), "sales.table".to_string())].into_iter().collect();
        f.aggregate = Some(AggregateSpec {
            table: "sales.table".into(),
            window: None,
            grace: std::time::Duration::ZERO,
            query_path: None,
            repartition: Some(Repartition { topic: "sales.repartition".into(), group_by: GroupBy::KeyFunction }),
        });
        let p = "User:kfn-sales";
        assert_eq!(
            lines(&function_acls(&f, p)),
            [
                format!("{p} ALLOW READ on TOPIC in (LITERAL) from *"),
                format!("{p} ALLOW READ on GROUP kfn.sales (LITERAL) from *"),
                format!("{p} ALLOW READ on TOPIC sales.table (LITERAL) from *"),
                format!("{p} ALLOW READ on GROUP kfn.sales.repartition (LITERAL) from *"),
                format!("{p} ALLOW READ on TOPIC sales.repartition (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC sales.table (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC sales.repartition (LITERAL) from *"),
                format!("{p} ALLOW WRITE on TOPIC sales.dlq (LITERAL) from *"),
                // The rekey stage's ids, kfn.sales.repartition.*, fall under the aggregate's prefix.
                format!("{p} ALLOW WRITE on TRANSACTIONAL_ID kfn.sales. (PREFIXED) from *"),
                format!("{p} ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.sales. (PREFIXED) from *"),
                format!("{p} ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *"),
            ]
        );
    }

    #[test]
    fn the_registry_gets_its_topic_and_nothing_else() {
        let acls = lines(&registry_acls("_schemas", "User:kfn-registry"));
        assert_eq!(
            acls,
            [
                "User:kfn-registry ALLOW CREATE on TOPIC _schemas (LITERAL) from *",
                "User:kfn-registry ALLOW READ on TOPIC _schemas (LITERAL) from *",
                "User:kfn-registry ALLOW WRITE on TOPIC _schemas (LITERAL) from *",
                "User:kfn-registry ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *",
            ]
        );
    }
}
