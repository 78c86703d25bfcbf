//! Record-batch compression, every codec Kafka knows, in pure Rust.
//!
//! kafka-protocol brings LZ4 and zstd through their C libraries (`lz4-sys`,
//! `zstd-sys`), about a minute of a cold build on two cores; kfn turns those
//! features off and compresses LZ4 with `lz4_flex` (the frame format Kafka's
//! clients write, blocks independent, fast mode) and zstd with `ruzstd`
//! (level "fastest", about zstd's 1). gzip and snappy stay kafka-protocol's,
//! already pure Rust. [`compress`] and [`decompress`] are the hooks
//! kafka-protocol's `encode_with_custom_compression` and
//! `decode_with_custom_compression` call for every batch.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};
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

/// The records of a batch whose record bytes `compressed` are compressed with `compression`.
pub fn decompress(compressed: &mut Bytes, compression: Compression) -> Result<Bytes> {
    let take = |buf: &mut Bytes| Ok(std::mem::take(buf));
    match compression {
        Compression::None => Ok(std::mem::take(compressed)),
        Compression::Gzip => codec::Gzip::decompress(compressed, take),
        Compression::Snappy => codec::Snappy::decompress(compressed, take),
        Compression::Lz4 => read_all(lz4_flex::frame::FrameDecoder::new(compressed.split_off(0).reader()))
            .context("cannot decompress lz4"),
        Compression::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(compressed.split_off(0).reader())
                .map_err(|e| anyhow::anyhow!("cannot decompress zstd: {e}"))?;
            read_all(decoder).context("cannot decompress zstd")
        }
    }
}

fn read_all(mut reader: impl Read) -> std::io::Result<Bytes> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out)?;
    Ok(out.into())
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

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut garbage = Bytes::from_static(b"\x28\xb5\x2f\xfd\x04\x22\x4d\x18not a frame at all");
            assert!(decompress(&mut garbage, compression).is_err(), "{compression:?}");
        }
    }
}
