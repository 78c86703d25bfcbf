//! The function runtime: group membership, partition workers, the
//! invocation layers, outputs, dead letters and commits.
//!
//! ```text
//! group member --assigned--> PartitionWorkers --spawn--> worker::run per partition
//! worker: fetch -> invoke (Retry(Observe(HandlerCall))) -> route outputs / dead letters
//!         -> produce (idempotent) then commit, or stage + offsets + commit (transaction)
//! ```

pub mod aggregate;
pub mod assignments;
pub mod committer;
pub mod dead_letter;
pub mod function;
pub mod invoke;
mod keyed;
pub mod outputs;
pub mod replay;
pub mod retry_topic;
pub mod worker;

#[cfg(test)]
mod tests;

pub use function::{start_function, FunctionHandle};
