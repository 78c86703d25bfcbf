//! Integration tests of kfn against a real broker (see kfn_tests::broker).

mod check;
mod group;
mod producer;
mod registry;
mod topics;
