//! Resolving transactions by their COMMIT and ABORT markers.
//!
//! A producer writes one transaction at a time and ends it with one control
//! batch (the marker), so a transactional data batch belongs to the
//! transaction closed by the next marker of the same producer. Reading the
//! markers themselves lets kfn decide every transaction whose marker the
//! response holds, whether or not the broker lists aborted transactions.

use std::collections::HashMap;

use bytes::Bytes;

use super::batch::{decode_records, BatchHeader};
use super::error::{FetchError, Where};

/// Control record type of an ABORT marker (key: version i16, type i16).
const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type of a COMMIT marker.
const CONTROL_TYPE_COMMIT: i16 = 1;

/// How a transaction ended, as its marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    Commit,
    Abort,
}

/// What a control batch says, judged by its first record's key.
///
/// `None` for control records that are not transaction markers (KRaft's
/// leader-change and snapshot records): they end no transaction.
pub(super) fn marker_of(header: &BatchHeader, bytes: &Bytes, at: Where<'_>) -> Result<Option<Marker>, FetchError> {
    let set = decode_records(header, bytes, at)?;
    let Some(first) = set.records.first() else {
        return Ok(None);
    };
    let key = first.key.as_deref().unwrap_or_default();
    if key.len() < 4 {
        return Err(at.corrupt(header.base_offset, "control record key shorter than 4 bytes"));
    }
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version < 0 {
        return Err(at.corrupt(header.base_offset, "negative control record version"));
    }
    // Newer key versions keep the type at the same place.
    Ok(match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_TYPE_ABORT => Some(Marker::Abort),
        CONTROL_TYPE_COMMIT => Some(Marker::Commit),
        _ => None,
    })
}

/// For each batch, the marker its producer writes after it in the response.
///
/// `batches` lists, in offset order, each batch's producer id and, for a
/// marker, what it says. `None` in the answer means the response ends before
/// the producer's next marker: the batch's transaction is open as far as this
/// response shows.
pub(super) fn next_markers(batches: &[(i64, Option<Marker>)]) -> Vec<Option<Marker>> {
    let mut after: HashMap<i64, Marker> = HashMap::new();
    let mut next = vec![None; batches.len()];
    for (slot, &(producer_id, marker)) in next.iter_mut().zip(batches).rev() {
        *slot = after.get(&producer_id).copied();
        if let Some(marker) = marker {
            after.insert(producer_id, marker);
        }
    }
    next
}
