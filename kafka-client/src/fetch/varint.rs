//! Varints as kafka-protocol reads them, for the fetch layer's own readers
//! (the Fetch response's arrays, the record pre-check): a pre-check must read
//! a count exactly as the decoder after it will, or it checks another number.

/// An unsigned varint of at most `max` bytes: like kafka-protocol, it stops
/// after `max` bytes even when the last one says more follow, and keeps the
/// low bits. `None` when `buf` ends first.
pub(super) fn unsigned(buf: &mut &[u8], max: u32) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..max {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f).checked_shl(i * 7).unwrap_or(0);
        if byte < 0x80 {
            break;
        }
    }
    Some(value)
}

/// An unsigned 32-bit varint (compact lengths, tag numbers and sizes).
pub(super) fn unsigned32(buf: &mut &[u8]) -> Option<u32> {
    unsigned(buf, 5).map(|v| v as u32)
}

/// A zigzag 32-bit varint (record lengths and counts).
pub(super) fn signed32(buf: &mut &[u8]) -> Option<i32> {
    let zigzag = unsigned32(buf)?;
    Some((zigzag >> 1) as i32 ^ -((zigzag & 1) as i32))
}
