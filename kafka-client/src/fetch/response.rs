//! The Fetch response, decoded with a bound on every array.
//!
//! kafka-protocol's generated decoders reserve room for as many elements as
//! an array's length on the wire claims (`Vec::with_capacity`) before they
//! read one. A corrupt length (2^31 topics) makes that a request for hundreds
//! of gigabytes, and a failed allocation aborts the process: no error to
//! handle, a crash (found by the `fetch_response` fuzz target,
//! docs/fuzzing.md). The Fetch response is the largest response kfn reads and
//! the one it reads most, so its three arrays (topics, partitions, aborted
//! transactions) are read here, each length checked against the bytes left
//! before anything is reserved; numbers, strings, record bytes and the
//! array-free structs of the tagged fields are read by kafka-protocol's own
//! decoders. Versions 4 to 12, the ones kfn sends ([`super::broker`]'s cap).

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    SnapshotId,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, StrBytes};

/// The versions [`decode`] reads.
pub const VERSIONS: std::ops::RangeInclusive<i16> = 4..=12;

/// The fewest bytes a topic of the response takes (a name's length, the partitions' count).
const MIN_TOPIC: usize = 3;
/// The fewest bytes a partition takes (index, error, watermarks, lengths).
const MIN_PARTITION: usize = 26;
/// The bytes an aborted transaction takes at least (producer id, first offset).
const MIN_ABORTED: usize = 16;

/// Decodes a Fetch response of `version` (4 to 12) from `buf`, as
/// kafka-protocol's `FetchResponse::decode` does, but failing with an error
/// where an array claims more elements than the bytes left could hold.
pub fn decode(buf: &mut Bytes, version: i16) -> Result<FetchResponse> {
    if !VERSIONS.contains(&version) {
        bail!("Fetch response version {version}: kfn reads versions 4 to 12");
    }
    let flexible = version >= 12;
    let mut response = FetchResponse::default();
    response.throttle_time_ms = i32_(buf)?;
    if version >= 7 {
        response.error_code = i16_(buf)?;
        response.session_id = i32_(buf)?;
    }
    response.responses = array(buf, flexible, MIN_TOPIC, "topics", |buf| topic(buf, version))?.unwrap_or_default();
    if flexible {
        // Tag 0 (node endpoints) exists from version 16 on: every tag here is unknown.
        response.unknown_tagged_fields = unknown_tags(buf)?;
    }
    Ok(response)
}

fn topic(buf: &mut Bytes, version: i16) -> Result<FetchableTopicResponse> {
    let flexible = version >= 12;
    let mut topic = FetchableTopicResponse::default();
    topic.topic = TopicName(string(buf, flexible)?);
    topic.partitions =
        array(buf, flexible, MIN_PARTITION, "partitions", |buf| partition(buf, version))?.unwrap_or_default();
    if flexible {
        topic.unknown_tagged_fields = unknown_tags(buf)?;
    }
    Ok(topic)
}

fn partition(buf: &mut Bytes, version: i16) -> Result<PartitionData> {
    let flexible = version >= 12;
    let mut data = PartitionData::default()
        .with_partition_index(i32_(buf)?)
        .with_error_code(i16_(buf)?)
        .with_high_watermark(i64_(buf)?)
        .with_last_stable_offset(i64_(buf)?);
    if version >= 5 {
        data.log_start_offset = i64_(buf)?;
    }
    data.aborted_transactions =
        array(buf, flexible, MIN_ABORTED, "aborted transactions", |buf| AbortedTransaction::decode(buf, version))?;
    if version >= 11 {
        data.preferred_read_replica = i32_(buf)?.into();
    }
    data.records = nullable_bytes(buf, flexible)?;
    if flexible {
        let count: u32 = uvarint(buf)?;
        for _ in 0..count {
            let tag: u32 = uvarint(buf)?;
            let size: u32 = uvarint(buf)?;
            match tag {
                // Structs without arrays: kafka-protocol's decoders are bounded by the buffer.
                0 => data.diverging_epoch = EpochEndOffset::decode(buf, version)?,
                1 => data.current_leader = LeaderIdAndEpoch::decode(buf, version)?,
                2 => data.snapshot_id = SnapshotId::decode(buf, version)?,
                _ => {
                    data.unknown_tagged_fields.insert(tag as i32, take(buf, size as usize)?);
                }
            }
        }
    }
    Ok(data)
}

/// An array (`None`: null) of elements read by `element`, its length refused
/// before anything is reserved when that many elements of at least `min`
/// bytes each cannot fit in what is left of `buf`.
fn array<T>(
    buf: &mut Bytes,
    flexible: bool,
    min: usize,
    what: &str,
    mut element: impl FnMut(&mut Bytes) -> Result<T>,
) -> Result<Option<Vec<T>>> {
    let Some(n) = array_len(buf, flexible, min, what)? else {
        return Ok(None);
    };
    let mut elements = Vec::with_capacity(n);
    for _ in 0..n {
        elements.push(element(buf)?);
    }
    Ok(Some(elements))
}

fn array_len(buf: &mut Bytes, flexible: bool, min: usize, what: &str) -> Result<Option<usize>> {
    let length: i64 = if flexible {
        // Compact arrays: the length plus one, 0 for null.
        i64::from(uvarint(buf)?) - 1
    } else {
        i64::from(i32_(buf)?)
    };
    match length {
        -1 => Ok(None),
        n if n < 0 => bail!("{what}: the array length is negative ({n})"),
        n => {
            let n = n as usize;
            if n.saturating_mul(min) > buf.remaining() {
                bail!("{what}: the array claims {n} elements, but only {} bytes are left", buf.remaining());
            }
            Ok(Some(n))
        }
    }
}

/// Tagged fields none of which this version knows: kept as they came.
fn unknown_tags(buf: &mut Bytes) -> Result<std::collections::BTreeMap<i32, Bytes>> {
    let mut tags = std::collections::BTreeMap::new();
    let count: u32 = uvarint(buf)?;
    for _ in 0..count {
        let tag: u32 = uvarint(buf)?;
        let size: u32 = uvarint(buf)?;
        tags.insert(tag as i32, take(buf, size as usize)?);
    }
    Ok(tags)
}

fn i16_(buf: &mut Bytes) -> Result<i16> {
    Ok(buf.try_get_i16()?)
}

fn i32_(buf: &mut Bytes) -> Result<i32> {
    Ok(buf.try_get_i32()?)
}

fn i64_(buf: &mut Bytes) -> Result<i64> {
    Ok(buf.try_get_i64()?)
}

/// An unsigned varint (lengths and tags of flexible versions), read as kafka-protocol reads it.
fn uvarint(buf: &mut Bytes) -> Result<u32> {
    let mut rest = &buf[..];
    let Some(value) = super::varint::unsigned32(&mut rest) else {
        bail!("the response ends inside a varint");
    };
    buf.advance(buf.len() - rest.len());
    Ok(value)
}

/// The next `n` bytes, without copying.
fn take(buf: &mut Bytes, n: usize) -> Result<Bytes> {
    if n > buf.remaining() {
        bail!("{n} bytes claimed, {} left", buf.remaining());
    }
    Ok(buf.split_to(n))
}

/// A string that may not be null (an int16 length, or a compact length plus one).
fn string(buf: &mut Bytes, flexible: bool) -> Result<StrBytes> {
    let length = if flexible { i64::from(uvarint(buf)?) - 1 } else { i64::from(i16_(buf)?) };
    if length < 0 {
        bail!("a topic name of length {length}");
    }
    StrBytes::from_utf8(take(buf, length as usize)?).context("a topic name that is not UTF-8")
}

/// Bytes that may be null (an int32 length, or a compact length plus one; -1 is null).
fn nullable_bytes(buf: &mut Bytes, flexible: bool) -> Result<Option<Bytes>> {
    let length = if flexible { i64::from(uvarint(buf)?) - 1 } else { i64::from(i32_(buf)?) };
    match length {
        -1 => Ok(None),
        n if n < 0 => bail!("records of length {n}"),
        n => Ok(Some(take(buf, n as usize)?)),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn sample(version: i16) -> FetchResponse {
        let mut partition = PartitionData::default()
            .with_partition_index(3)
            .with_error_code(0)
            .with_high_watermark(120)
            .with_last_stable_offset(118)
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(7.into())
                .with_first_offset(100)]))
            .with_records(Some(Bytes::from_static(b"not decoded here")));
        if version >= 5 {
            partition.log_start_offset = 10;
        }
        if version >= 11 {
            partition.preferred_read_replica = 2.into();
        }
        if version >= 12 {
            partition.diverging_epoch = EpochEndOffset::default().with_epoch(4).with_end_offset(90);
            partition.current_leader = LeaderIdAndEpoch::default().with_leader_id(1.into()).with_leader_epoch(5);
            partition.snapshot_id = SnapshotId::default().with_end_offset(80).with_epoch(3);
            partition.unknown_tagged_fields.insert(9, Bytes::from_static(b"later"));
        }
        let empty = PartitionData::default().with_partition_index(4).with_records(None);
        let topic = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders.created")))
            .with_partitions(vec![partition, empty]);
        let mut response = FetchResponse::default().with_throttle_time_ms(5).with_responses(vec![topic]);
        if version >= 7 {
            response.error_code = 0;
            response.session_id = 77;
        }
        response
    }

    fn encode(response: &FetchResponse, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        response.encode(&mut buf, version).expect("encode");
        buf.freeze()
    }

    #[test]
    fn every_version_reads_as_kafka_protocol_reads_it() {
        for version in VERSIONS {
            let bytes = encode(&sample(version), version);
            let ours = decode(&mut bytes.clone(), version).expect("decodes");
            let theirs = FetchResponse::decode(&mut bytes.clone(), version).expect("kafka-protocol decodes");
            assert_eq!(ours, theirs, "version {version}");
            assert_eq!(ours, sample(version), "version {version}");
        }
    }

    #[test]
    fn an_array_longer_than_the_bytes_left_is_an_error_not_an_allocation() {
        for version in VERSIONS {
            let flexible = version >= 12;
            let mut bytes = encode(&sample(version), version).to_vec();
            // The topics' count follows throttle time (4), error code and session id (6, from v7).
            let at = if version >= 7 { 10 } else { 4 };
            if flexible {
                // A varint of 2^31: five bytes where one was.
                bytes.splice(at..at + 1, [0x80, 0x80, 0x80, 0x80, 0x08]);
            } else {
                bytes[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
            }
            let error = decode(&mut Bytes::from(bytes), version).expect_err("a length of 2^31");
            assert!(error.to_string().contains("topics: the array claims"), "version {version}: {error}");
        }
    }

    #[test]
    fn a_cut_response_is_an_error() {
        for version in VERSIONS {
            let bytes = encode(&sample(version), version);
            for cut in [1, bytes.len() / 2, bytes.len() - 1] {
                assert!(decode(&mut bytes.slice(..cut), version).is_err(), "version {version}, {cut} bytes");
            }
        }
    }

    #[test]
    fn versions_kfn_does_not_send_are_refused() {
        assert!(decode(&mut Bytes::new(), 3).is_err());
        assert!(decode(&mut Bytes::new(), 13).is_err());
    }
}
