//! Schema evolution as kfn does it: no reader schema, the reader is the Rust
//! type, and serde_avro_fast walks the *writer's* schema, matching fields by
//! name. These tests pin down what that means (see docs/avro.md).

use std::collections::HashMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_avro_fast::Schema;

use crate::avro::{decode, CodecError};

const V1: &str = r#"{"type":"record","name":"Customer","namespace":"kfn.test","fields":[
    {"name":"id","type":"string"},
    {"name":"visits","type":"int"}
]}"#;

/// V1 plus fields of every shape, one in the middle, with Avro defaults.
const V2: &str = r#"{"type":"record","name":"Customer","namespace":"kfn.test","fields":[
    {"name":"id","type":"string"},
    {"name":"address","type":{"type":"record","name":"Address","fields":[
        {"name":"lines","type":{"type":"array","items":"string"}},
        {"name":"tags","type":{"type":"map","values":"long"}}
    ]}, "default": {"lines": [], "tags": {}}},
    {"name":"visits","type":"int"},
    {"name":"email","type":["null","string"],"default":null},
    {"name":"tier","type":{"type":"enum","name":"Tier","symbols":["FREE","GOLD"]},"default":"FREE"}
]}"#;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CustomerV1 {
    id: String,
    visits: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Address {
    lines: Vec<String>,
    tags: HashMap<String, i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
enum Tier {
    #[default]
    #[serde(rename = "FREE")]
    Free,
    #[serde(rename = "GOLD")]
    Gold,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CustomerV2 {
    id: String,
    address: Address,
    visits: i32,
    email: Option<String>,
    tier: Tier,
}

fn schema(text: &str) -> Schema {
    Schema::from_str(text).unwrap()
}

fn encode<T: Serialize>(value: &T, schema: &Schema) -> Vec<u8> {
    serde_avro_fast::to_datum(value, Vec::new(), &mut serde_avro_fast::ser::SerializerConfig::new(schema)).unwrap()
}

fn v2_customer() -> CustomerV2 {
    CustomerV2 {
        id: "c-1".into(),
        address: Address {
            lines: vec!["1 Main St".into(), "Springfield".into()],
            tags: HashMap::from([("x".into(), 7)]),
        },
        visits: 42,
        email: Some("c@example.com".into()),
        tier: Tier::Gold,
    }
}

#[test]
fn a_reader_with_an_added_defaulted_field_reads_old_records() {
    #[derive(Debug, PartialEq, Deserialize)]
    struct Reader {
        id: String,
        visits: i32,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        tier: Tier,
    }
    let old = encode(&CustomerV1 { id: "c-1".into(), visits: 3 }, &schema(V1));
    let read: Reader = decode(1, &schema(V1), &old).unwrap();
    assert_eq!(read, Reader { id: "c-1".into(), visits: 3, email: None, tier: Tier::Free });
}

#[test]
fn an_added_field_without_a_serde_default_cannot_read_old_records() {
    // The Avro default in V2 does not help: without a reader schema only serde defaults count.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Reader {
        id: String,
        visits: i32,
        tier: Tier,
    }
    let old = encode(&CustomerV1 { id: "c-1".into(), visits: 3 }, &schema(V1));
    let err = decode::<Reader>(1, &schema(V1), &old).unwrap_err();
    let CodecError::Decode { message, .. } = &err else { panic!("{err}") };
    assert!(message.contains("missing field `tier`"), "{message}");
}

#[test]
fn a_reader_without_a_field_skips_it_in_newer_records() {
    let written = v2_customer();
    let datum = encode(&written, &schema(V2));
    // Fields the reader does not know are skipped wherever they sit, whatever their type.
    let read: CustomerV1 = decode(2, &schema(V2), &datum).unwrap();
    assert_eq!(read, CustomerV1 { id: "c-1".into(), visits: 42 });
    // And the full type reads the same bytes back whole.
    assert_eq!(decode::<CustomerV2>(2, &schema(V2), &datum).unwrap(), written);
}

#[test]
fn fields_match_by_name_not_position() {
    const REORDERED: &str = r#"{"type":"record","name":"Customer","namespace":"kfn.test","fields":[
        {"name":"visits","type":"int"},
        {"name":"id","type":"string"}
    ]}"#;
    let datum = encode(&CustomerV1 { id: "c-9".into(), visits: 9 }, &schema(REORDERED));
    assert_eq!(datum[0], 18, "visits (zig-zag 9) is written first");
    let read: CustomerV1 = decode(3, &schema(REORDERED), &datum).unwrap();
    assert_eq!(read, CustomerV1 { id: "c-9".into(), visits: 9 });
}

#[test]
fn an_int_written_reads_into_a_wider_reader_field() {
    #[derive(Debug, PartialEq, Deserialize)]
    struct Wide {
        id: String,
        visits: i64,
    }
    let datum = encode(&CustomerV1 { id: "c".into(), visits: -5 }, &schema(V1));
    assert_eq!(decode::<Wide>(1, &schema(V1), &datum).unwrap(), Wide { id: "c".into(), visits: -5 });
}

#[test]
fn a_changed_field_type_is_a_decode_error() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Reader {
        id: String,
        visits: String,
    }
    let datum = encode(&CustomerV1 { id: "c".into(), visits: 1 }, &schema(V1));
    let err = decode::<Reader>(1, &schema(V1), &datum).unwrap_err();
    assert!(matches!(err, CodecError::Decode { id: 1, .. }), "{err}");
}

#[test]
fn an_enum_symbol_the_reader_lacks_fails_unless_it_has_a_catch_all() {
    const V3: &str = r#"{"type":"record","name":"Customer","namespace":"kfn.test","fields":[
        {"name":"tier","type":{"type":"enum","name":"Tier","symbols":["FREE","GOLD","PLATINUM"]}}
    ]}"#;
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Strict {
        tier: Tier,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    enum LenientTier {
        #[serde(rename = "FREE")]
        Free,
        #[serde(rename = "GOLD")]
        Gold,
        #[serde(other)]
        Unknown,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Lenient {
        tier: LenientTier,
    }
    // PLATINUM is symbol 2: zig-zag 4.
    let datum = [4u8];
    let err = decode::<Strict>(3, &schema(V3), &datum).unwrap_err();
    assert!(err.to_string().contains("PLATINUM"), "{err}");
    assert_eq!(decode::<Lenient>(3, &schema(V3), &datum).unwrap(), Lenient { tier: LenientTier::Unknown });
}

#[test]
fn deny_unknown_fields_turns_skipping_into_an_error() {
    // Event types must not deny unknown fields, or every added writer field breaks them.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        id: String,
        visits: i32,
    }
    let datum = encode(&v2_customer(), &schema(V2));
    let err = decode::<Strict>(2, &schema(V2), &datum).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}
