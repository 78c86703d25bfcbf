//! Integration tests of kfn against a real broker (see kfn_tests::broker).

mod check;
mod producer;
mod topics;
