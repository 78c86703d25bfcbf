//! Integration tests of kfn against a real broker (see kfn_tests::broker).

mod check;
mod exactly_once;
mod group;
mod producer;
mod registry;
mod restart;
mod runtime;
mod security;
mod topics;
