//! Consumer groups: membership, assignment and offset commits.

pub mod assignor;
pub mod consumer_protocol;
pub mod coordinator;
pub mod member;
pub mod membership;
pub mod protocol;
pub mod reset;

#[cfg(test)]
mod tests;
