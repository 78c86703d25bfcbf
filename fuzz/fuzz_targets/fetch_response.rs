//! A Fetch response from the wire: the first byte picks the version (4 to
//! 12, those kfn sends), the rest is the response body as a broker sends it.
//! kfn's fetcher decodes it (`kfn::kafka::fetch::response`: kafka-protocol's
//! decoders under arrays bounded by the bytes left), then every partition's
//! record set (batch splitting, control markers, the aborted list, and the
//! batches' records).
//!
//! Raw bytes rarely pass a batch's CRC once mutated, so the compressed
//! payloads are reached by the seeds (batches of every codec, written by
//! `record_batches` with `KFN_FUZZ_WRITE_SEEDS`) and, structurally, by the
//! `record_batches` target.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/fetch.rs"]
mod fetch;

fuzz_target!(|data: &[u8]| {
    let Some((&version, wire)) = data.split_first() else {
        return;
    };
    let versions = fetch::VERSIONS;
    let span = (versions.end() - versions.start() + 1) as u8;
    let version = versions.start() + i16::from(version % span);
    fetch::check_response(version, wire);
});
