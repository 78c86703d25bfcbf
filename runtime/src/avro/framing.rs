//! The Confluent wire format of a record value: magic byte `0`, the schema id
//! as a 4-byte big-endian integer, then the Avro binary datum.
//!
//! ```
//! use kfn::avro::framing;
//! let mut value = Vec::new();
//! framing::write_header(42, &mut value);
//! value.extend_from_slice(b"\x06foo");
//! let (id, datum) = framing::split(&value).unwrap();
//! assert_eq!((id, datum), (42, &b"\x06foo"[..]));
//! ```

use super::error::FramingError;

/// The first byte of every Confluent-framed value.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the header (magic byte + schema id) in front of the datum.
pub const HEADER_LEN: usize = 5;

/// Splits a framed value into its schema id and its Avro datum.
///
/// An empty datum is accepted: a record with no fields encodes to zero bytes.
pub fn split(value: &[u8]) -> Result<(u32, &[u8]), FramingError> {
    let Some(&first) = value.first() else {
        return Err(FramingError::Empty);
    };
    if first != MAGIC_BYTE {
        return Err(FramingError::WrongMagicByte { byte: first });
    }
    let Some((header, datum)) = value.split_first_chunk::<HEADER_LEN>() else {
        return Err(FramingError::TooShort { len: value.len() });
    };
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, datum))
}

/// Appends the header for schema `id` to `out`; the datum goes after it.
pub fn write_header(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_a_good_header() {
        let value = [0, 0, 0, 1, 2, 0xAA, 0xBB];
        let (id, datum) = split(&value).unwrap();
        assert_eq!(id, 258);
        assert_eq!(datum, &[0xAA, 0xBB]);
    }

    #[test]
    fn header_only_is_an_empty_datum() {
        let (id, datum) = split(&[0, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(id, u32::MAX);
        assert!(datum.is_empty());
    }

    #[test]
    fn empty_value_is_rejected() {
        assert_eq!(split(&[]), Err(FramingError::Empty));
    }

    #[test]
    fn wrong_magic_byte_names_the_byte() {
        // A JSON value written by a producer that does not use the registry.
        let err = split(b"{\"order_id\":1}").unwrap_err();
        assert_eq!(err, FramingError::WrongMagicByte { byte: b'{' });
        assert!(err.to_string().contains("0x7b"), "{err}");
    }

    #[test]
    fn short_input_is_rejected() {
        for len in 1..HEADER_LEN {
            let value = vec![0u8; len];
            assert_eq!(split(&value), Err(FramingError::TooShort { len }));
        }
    }

    proptest! {
        #[test]
        fn header_round_trips(id in any::<u32>(), datum in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut value = Vec::new();
            write_header(id, &mut value);
            prop_assert_eq!(value.len(), HEADER_LEN);
            value.extend_from_slice(&datum);
            let (got_id, got_datum) = split(&value).unwrap();
            prop_assert_eq!(got_id, id);
            prop_assert_eq!(got_datum, &datum[..]);
        }
    }
}
