//! Aggregates that group by a key their input is not keyed by: the internal
//! topic `<function>.repartition` and the two stages kfn runs for them.
//!
//! ```text
//! inputs --rekey stage (group kfn.<f>.repartition: group_by field or key function)-->
//!     <f>.repartition (keyed by the grouping key, partitioned like the table)
//!     --fold stage (group kfn.<f>, as any aggregate)--> table
//! ```
//!
//! Both stages are ordinary topic functions of the invoker, derived here from
//! the aggregate's spec ([`FunctionSpec::rekey_stage`], [`FunctionSpec::fold_stage`]),
//! so they share its guarantee, retry policy, dead-letter topic and identity.

use std::borrow::Cow;

use super::{FunctionKind, FunctionSpec, Ordering};

/// What the rekey stage writes to the internal topic: the output name the
/// SDK's rekey handler emits to.
pub use kfn_sdk::REPARTITION_OUTPUT;

/// The suffix of the internal topic and of the rekey stage's name.
pub const REPARTITION_SUFFIX: &str = "repartition";

/// The internal topic of an aggregate that groups by a key: `<function>.repartition`.
pub fn repartition_topic(function: &str) -> String {
    format!("{function}.{REPARTITION_SUFFIX}")
}

/// How an aggregate regroups its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repartition {
    /// The internal topic: `<function>.repartition`, or the topic of that name declared under `[topics]`.
    pub topic: String,
    /// Where each record's grouping key comes from.
    pub group_by: GroupBy,
}

/// Where an input record's grouping key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// A field of the event (`group_by = "field"`): a string, long or int.
    Field(String),
    /// The key function registered with the fold (`Registry::aggregate_by`): zero or more keys per event.
    KeyFunction,
}

impl GroupBy {
    /// The field, for the SDK's rekey handler (`None`: the key function).
    pub fn field(&self) -> Option<&str> {
        match self {
            GroupBy::Field(field) => Some(field),
            GroupBy::KeyFunction => None,
        }
    }
}

impl FunctionSpec {
    /// How this aggregate repartitions its input, if it does.
    pub fn repartition(&self) -> Option<&Repartition> {
        self.aggregate.as_ref()?.repartition.as_ref()
    }

    /// The consumer group of the rekey stage: `kfn.<function>.repartition`.
    pub fn repartition_group_id(&self) -> String {
        format!("{}.{REPARTITION_SUFFIX}", self.group_id())
    }

    /// The rekey stage of an aggregate that repartitions: a topic function
    /// `<function>.repartition` (so its group is `kfn.<function>.repartition`
    /// and its transactional ids start with `kfn.<function>.`) reading the
    /// aggregate's inputs and writing each record under its grouping key to
    /// the internal topic, with the aggregate's guarantee, retry policy and
    /// dead-letter topic.
    pub fn rekey_stage(&self) -> Option<FunctionSpec> {
        let repartition = self.repartition()?;
        Some(FunctionSpec {
            name: format!("{}.{REPARTITION_SUFFIX}", self.name),
            handler: self.handler.clone(),
            kind: self.kind.clone(),
            outputs: [(REPARTITION_OUTPUT.to_string(), repartition.topic.clone())].into_iter().collect(),
            guarantee: self.guarantee,
            // Partition order: one key's records from one input partition reach the fold in order.
            ordering: Ordering::Partition,
            max_in_flight: self.max_in_flight,
            retry: self.retry.clone(),
            dead_letter: self.dead_letter.clone(),
            start_from: self.start_from,
            doc: Some(format!("The rekey stage of aggregate {}.", self.name)),
            aggregate: None,
            tables: Default::default(),
        })
    }

    /// The topic functions this function runs as, each with its own group:
    /// the rekey stage and the fold stage of an aggregate that repartitions,
    /// else the function itself. What reads group offsets (lag) looks at these.
    pub fn stages(&self) -> Vec<FunctionSpec> {
        self.rekey_stage().into_iter().chain([self.fold_stage().into_owned()]).collect()
    }

    /// The fold stage: the aggregate itself, reading its internal topic
    /// instead of its inputs when it repartitions (else the spec as it is).
    pub fn fold_stage(&self) -> Cow<'_, FunctionSpec> {
        match self.repartition() {
            None => Cow::Borrowed(self),
            Some(repartition) => {
                let mut fold = self.clone();
                fold.kind = FunctionKind::Topic { inputs: vec![repartition.topic.clone()] };
                Cow::Owned(fold)
            }
        }
    }
}
