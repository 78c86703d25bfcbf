//! The start-up check of a function's access: before it joins its group or
//! produces, a function asks the broker (Metadata with the topics' authorized
//! operations) whether its principal may READ its inputs and WRITE its
//! outputs, dead-letter and retry topics. Anything missing fails the start
//! with one error naming the function, the principal, and each operation and
//! topic denied, instead of a fetch or produce error later, per partition.
//!
//! A function fails at start-up rather than serving part of its work: a
//! function that can read but not write would take records it can never
//! deliver. Group, transactional-id and cluster ACLs are not asked for (the
//! broker offers no side-effect-free question for them); a denial there
//! surfaces as the request's own error (GROUP_AUTHORIZATION_FAILED, ...).

use std::fmt;

use crate::config::FunctionSpec;
use crate::kafka::acl::{AclError, Acls, Operation, TopicAccess};
use crate::kafka::Cluster;

/// One operation a principal may not do on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// What it may not do.
    pub operation: Operation,
    /// The topic.
    pub topic: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} topic {}", self.operation.as_str(), self.topic)
    }
}

/// Why a function may not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The principal lacks ACLs the function needs.
    #[error(
        "function {function} runs as {principal}, which is not authorized to {}; \
         grant what functions.toml declares with `kfn acls apply` (see `kfn acls plan`)",
        denied.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Denied {
        /// The function.
        function: String,
        /// Its principal, `User:<name>`.
        principal: String,
        /// Each operation denied, in the function's order (inputs first).
        denied: Vec<Denial>,
    },
    /// The broker could not be asked.
    #[error("function {function}: cannot ask the broker what {principal} may do: {source}")]
    Query {
        /// The function.
        function: String,
        /// Its principal.
        principal: String,
        /// The cause.
        #[source]
        source: AclError,
    },
}

/// The topic operations `function` needs: READ on its inputs (and retry
/// topic, and an aggregate's table), WRITE on its outputs, dead-letter and retry topics.
pub fn needed(function: &FunctionSpec) -> Vec<(Operation, String)> {
    let mut needed: Vec<(Operation, String)> = Vec::new();
    let mut add = |op, topic: &str| {
        if !needed.iter().any(|(o, t)| *o == op && t == topic) {
            needed.push((op, topic.to_string()));
        }
    };
    for input in function.inputs() {
        add(Operation::Read, input);
    }
    if let Some(retry) = &function.retry.topic {
        add(Operation::Read, retry);
        add(Operation::Write, retry);
    }
    if let Some(aggregate) = &function.aggregate {
        add(Operation::Read, &aggregate.table);
    }
    for output in function.outputs.values() {
        add(Operation::Write, output);
    }
    if let Some(dead_letter) = &function.dead_letter {
        add(Operation::Write, dead_letter);
    }
    needed
}

/// Checks that `principal` (the identity of `cluster`'s connections) may do
/// what `function` needs on its topics. Topics that do not exist are left
/// to the function's own start, which names them.
pub async fn check_function(cluster: &Cluster, function: &FunctionSpec, principal: &str) -> Result<(), AccessError> {
    let needed = needed(function);
    if needed.is_empty() {
        return Ok(());
    }
    let mut topics: Vec<&str> = needed.iter().map(|(_, t)| t.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    let access = Acls::new(cluster.clone()).topic_access(&topics).await.map_err(|source| AccessError::Query {
        function: function.name.clone(),
        principal: principal.to_string(),
        source,
    })?;
    let denied = denials(&needed, &access);
    if denied.is_empty() {
        return Ok(());
    }
    Err(AccessError::Denied { function: function.name.clone(), principal: principal.to_string(), denied })
}

/// The needed operations the broker's answer does not allow.
fn denials(needed: &[(Operation, String)], access: &[(String, TopicAccess)]) -> Vec<Denial> {
    needed
        .iter()
        .filter(|(op, topic)| match access.iter().find(|(t, _)| t == topic) {
            Some((_, TopicAccess::Missing(_))) | None => false,
            Some((_, a)) => !a.allows(*op),
        })
        .map(|(operation, topic)| Denial { operation: *operation, topic: topic.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_come_from_the_bit_field() {
        let bits = (1 << Operation::Read.code()) | (1 << Operation::Describe.code());
        let access = TopicAccess::from_metadata(0, bits);
        assert!(access.allows(Operation::Read));
        assert!(!access.allows(Operation::Write));
        assert_eq!(TopicAccess::from_metadata(29, 0), TopicAccess::Hidden);
        assert!(TopicAccess::from_metadata(0, i32::MIN).allows(Operation::Write), "not computed: not a denial");
    }

    #[test]
    fn only_what_is_missing_is_denied_in_the_functions_order() {
        let needed = vec![
            (Operation::Read, "in".to_string()),
            (Operation::Write, "out".to_string()),
            (Operation::Write, "hidden".to_string()),
            (Operation::Write, "absent".to_string()),
        ];
        let read_only = (1 << Operation::Read.code()) | (1 << Operation::Describe.code());
        let access = vec![
            ("in".to_string(), TopicAccess::Allowed(vec![Operation::Read, Operation::Describe])),
            ("out".to_string(), TopicAccess::from_metadata(0, read_only)),
            ("hidden".to_string(), TopicAccess::Hidden),
            ("absent".to_string(), TopicAccess::Missing(3)),
        ];
        let denied: Vec<String> = denials(&needed, &access).iter().map(ToString::to_string).collect();
        assert_eq!(denied, ["WRITE topic out", "WRITE topic hidden"]);
    }
}
