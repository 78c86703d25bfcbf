//! Consumer groups: membership, assignment and offset commits.

pub mod assignor;
pub mod coordinator;
pub mod member;
pub mod protocol;
pub mod reset;

#[cfg(test)]
mod tests;
