//! The pipe's limit: librdkafka consuming the input topic and producing each
//! record's raw bytes (and key) to the output topic, no decoding.

use kfn_bench::baseline::{pipe, ServiceEnv, Transform};

struct Raw;

impl Transform for Raw {
    fn apply<'a>(&mut self, input: &'a [u8], _buffer: &'a mut Vec<u8>) -> anyhow::Result<&'a [u8]> {
        Ok(input)
    }
}

fn main() -> anyhow::Result<()> {
    pipe(&ServiceEnv::from_env()?, Raw)
}
