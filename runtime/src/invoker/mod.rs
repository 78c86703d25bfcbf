//! The function runtime, along the record's path: group membership,
//! partition workers, then per record ingress -> one layer stack -> egress ->
//! deliver.
//!
//! ```text
//! function::start_function(FunctionDeps, spec, code)
//!   -> GroupMember --assigned--> assignments::PartitionWorkers --spawn--> worker::run per partition
//! worker::run: start offset (waits out a previous owner's open transaction), deliver::Deliver,
//!              an aggregate's state restored; then one driver:
//!   keyed::run   (ordering = "key")            chunked::run (partition order, aggregates, retry topic)
//!        \                                          /
//!   ingress   record -> Invocation (Origin, Ctx; retry-topic headers read once; Inputs picks the stack)
//!   invoke    Retry(Observe(HandlerCall | FoldCall)): decode, panic catch, metrics, retry by policy
//!   egress    outcome -> output records | retry-topic copy | dead letter   (pure, no I/O)
//!   deliver   AtLeastOnce: produce, then commit
//!             exactly_once: stage, send offsets, commit, in
//!               MemberTransaction    (one transaction for all the member's partitions; the group
//!                                     generation fences a zombie: KIP-447), or
//!               PartitionTransaction (one producer per input partition; its InitProducerId fences)
//! ```
//!
//! [`shared::FunctionShared`] holds what every worker of a function shares.
//! Which topics a function reads and which handler stack runs a record of a
//! topic is decided in one place: [`ingress::Inputs`].

pub mod aggregate;
pub mod assignments;
mod chunked;
pub mod committer;
pub mod dead_letter;
pub mod deliver;
pub mod egress;
pub mod function;
pub mod ingress;
pub mod invoke;
/// JSON topics' values (moved to the crate root: tables read them too).
pub use crate::json;
mod keyed;
pub mod outputs;
pub mod replay;
pub mod retry_topic;
pub mod shared;
pub mod worker;

#[cfg(test)]
mod tests;

pub use function::{start_function, FunctionHandle};
