//! Consumer groups: membership, assignment and offset commits.

pub mod assignor;
pub mod coordinator;
pub mod member;
pub mod protocol;

#[cfg(test)]
mod tests;
