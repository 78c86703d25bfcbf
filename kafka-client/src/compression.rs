//! Record-batch compression, every codec Kafka knows, in pure Rust.
//!
//! kafka-protocol brings LZ4 and zstd through their C libraries (`lz4-sys`,
//! `zstd-sys`), about a minute of a cold build on two cores; kfn turns those
//! features off and compresses LZ4 with `lz4_flex` (the frame format Kafka's
//! clients write, blocks independent, fast mode) and zstd with `ruzstd`
//! (level "fastest", about zstd's 1). gzip and snappy compress with
//! kafka-protocol's codecs, already pure Rust. [`compress`] and
//! [`decompress`] are the hooks kafka-protocol's
//! `encode_with_custom_compression` and `decode_with_custom_compression`
//! call for every batch.
//!
//! Decompression is bounded: kfn decompresses a batch whole (Kafka's Java
//! consumer streams it record by record), so a batch that inflates beyond
//! [`decompressed_limit`] is a decode error, not a process out of memory.
//! Snappy, whose decoder allocates the length a block *claims* at once, is
//! read here for that reason (kafka-protocol's allocated 860 MB for an
//! 869-byte corrupt batch the `record_batches` fuzz target built).

use std::io::{Read, Write};

use anyhow::{Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
use kafka_protocol::records::Compression;

/// Writes `records` (the batch's encoded records) into `out`, compressed with `compression`.
pub fn compress(records: &mut BytesMut, out: &mut BytesMut, compression: Compression) -> Result<()> {
    let copy = |buf: &mut BytesMut| {
        buf.put(records.split());
        Ok(())
    };
    match compression {
        Compression::None => codec::None::compress(out, copy),
        Compression::Gzip => codec::Gzip::compress(out, copy),
        Compression::Snappy => codec::Snappy::compress(out, copy),
        Compression::Lz4 => {
            let frame = lz4_flex::frame::FrameInfo::new().block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(frame, out.writer());
            encoder.write_all(records).context("cannot compress with lz4")?;
            encoder.finish().context("cannot compress with lz4")?;
            Ok(())
        }
        Compression::Zstd => {
            ruzstd::encoding::compress(&records[..], out.writer(), ruzstd::encoding::CompressionLevel::Fastest);
            Ok(())
        }
    }
}

/// The most the records of a batch of `compressed` bytes may take once
/// decompressed: 128 MiB, or 256 times the compressed bytes when that is more
/// (far beyond what records compress to; a decompression bomb goes further).
pub fn decompressed_limit(compressed: usize) -> usize {
    (128 << 20).max(compressed.saturating_mul(256))
}

/// The records of a batch whose record bytes `compressed` are compressed with
/// `compression`; an error if they would take more than [`decompressed_limit`].
pub fn decompress(compressed: &mut Bytes, compression: Compression) -> Result<Bytes> {
    let limit = decompressed_limit(compressed.len());
    let input = compressed.split_off(0);
    match compression {
        Compression::None => Ok(input),
        Compression::Gzip => read_all(flate2::read::GzDecoder::new(input.reader()), limit, "gzip"),
        Compression::Snappy => snappy(&input, limit),
        Compression::Lz4 => read_all(lz4_flex::frame::FrameDecoder::new(input.reader()), limit, "lz4"),
        Compression::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(input.reader())
                .map_err(|e| anyhow::anyhow!("cannot decompress zstd: {e}"))?;
            read_all(decoder, limit, "zstd")
        }
    }
}

/// Everything `reader` gives, up to `limit` bytes (an error beyond).
fn read_all(reader: impl Read, limit: usize, codec: &str) -> Result<Bytes> {
    let mut out = Vec::new();
    let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(bound).read_to_end(&mut out).with_context(|| format!("cannot decompress {codec}"))?;
    anyhow::ensure!(out.len() <= limit, "the {codec} records would take more than {limit} bytes decompressed");
    Ok(out.into())
}

/// The header Kafka's Java clients (snappy-java's `SnappyOutputStream`) put
/// before their blocks: each then is a big-endian length and a raw snappy block.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// A snappy block decompresses to at most this many times its size (its
/// densest element, a copy, takes 3 bytes for 64), plus its length varint.
const SNAPPY_MAX_RATIO: usize = 22;

/// Snappy as Kafka writes it (xerial blocks, or one raw block as the Java
/// client also reads), each block's claimed length checked before room is made for it.
fn snappy(input: &[u8], limit: usize) -> Result<Bytes> {
    let mut out = BytesMut::new();
    let mut block = |block: &[u8]| -> Result<()> {
        let length = snap::raw::decompress_len(block).context("cannot decompress snappy")?;
        anyhow::ensure!(
            length <= block.len().saturating_mul(SNAPPY_MAX_RATIO) + 16,
            "a snappy block of {} bytes claims {length} decompressed: corrupt",
            block.len()
        );
        anyhow::ensure!(
            out.len().saturating_add(length) <= limit,
            "the snappy records would take more than {limit} bytes decompressed"
        );
        let start = out.len();
        out.resize(start + length, 0);
        snap::raw::Decoder::new().decompress(block, &mut out[start..]).context("cannot decompress snappy")?;
        Ok(())
    };
    match input.strip_prefix(&XERIAL_HEADER[..]) {
        None => block(input)?,
        Some(mut blocks) => {
            while !blocks.is_empty() {
                anyhow::ensure!(blocks.len() >= 4, "cannot decompress snappy: a block length cut short");
                let (length, rest) = blocks.split_at(4);
                let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
                anyhow::ensure!(rest.len() >= length, "cannot decompress snappy: a block cut short");
                let (this, rest) = rest.split_at(length);
                block(this)?;
                blocks = rest;
            }
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    #[test]
    fn every_codec_gives_back_what_it_was_given() {
        let text: Vec<u8> = (0..50_000u32).flat_map(|i| format!("order-{} ", i % 977).into_bytes()).collect();
        for compression in ALL {
            for input in [&b""[..], &b"x"[..], &text[..]] {
                let mut out = BytesMut::new();
                compress(&mut BytesMut::from(input), &mut out, compression).unwrap();
                if compression != Compression::None && input.len() > 1000 {
                    assert!(out.len() < input.len() / 4, "{compression:?} compressed {} to {}", input.len(), out.len());
                }
                let back = decompress(&mut out.freeze(), compression).unwrap();
                assert_eq!(&back[..], input, "{compression:?}");
            }
        }
    }

    /// Found by the `record_batches` fuzz target: a corrupt snappy block
    /// whose length varint claimed about 860 MB made kafka-protocol's decoder
    /// allocate (and zero) all of it before finding the block corrupt.
    #[test]
    fn a_snappy_block_claiming_more_than_it_can_hold_is_refused_before_any_allocation() {
        // A varint of 0xFFFFFFFF (4 GiB - 1) before a few bytes: raw, and in a xerial frame.
        let claim = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00, 0x01, 0x02];
        let mut framed = XERIAL_HEADER.to_vec();
        framed.extend_from_slice(&(claim.len() as u32).to_be_bytes());
        framed.extend_from_slice(&claim);
        for input in [&claim[..], &framed[..]] {
            let error = decompress(&mut Bytes::copy_from_slice(input), Compression::Snappy).unwrap_err();
            assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
        }
    }

    /// gzip and zstd can inflate far beyond the limit (LZ4 and snappy cannot
    /// pass 256 times: their densest elements are 255 and 22 times their size).
    #[test]
    fn records_that_inflate_beyond_the_limit_are_an_error() {
        // 160 MiB of zeros compress to less than 256 KiB with gzip and zstd.
        let zeros = vec![0u8; 160 << 20];
        for compression in [Compression::Gzip, Compression::Zstd] {
            let mut out = BytesMut::new();
            compress(&mut BytesMut::from(&zeros[..]), &mut out, compression).unwrap();
            assert!(decompressed_limit(out.len()) < zeros.len(), "{compression:?}: {} bytes", out.len());
            let error = decompress(&mut out.freeze(), compression).unwrap_err();
            assert!(format!("{error:#}").contains("decompressed"), "{compression:?}: {error:#}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut garbage = Bytes::from_static(b"\x28\xb5\x2f\xfd\x04\x22\x4d\x18not a frame at all");
            assert!(decompress(&mut garbage, compression).is_err(), "{compression:?}");
        }
    }
}
