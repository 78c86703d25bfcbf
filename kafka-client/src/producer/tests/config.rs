//! ProducerConfig validation and the compression names.

use std::time::Duration;

use crate::producer::{Acks, Compression, ProducerConfig, ProducerError};

fn invalid_field(config: &ProducerConfig) -> &'static str {
    match config.validate() {
        Err(ProducerError::InvalidConfig { field, .. }) => field,
        other => panic!("expected an invalid setting, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid_and_idempotent() {
    let config = ProducerConfig::default();
    config.validate().unwrap();
    assert!(config.idempotent);
    assert_eq!(config.acks, Acks::All);
    assert_eq!(config.linger, Duration::from_millis(5));
    let transactional =
        ProducerConfig { transactional_id: Some("kfn.validation.0".into()), ..ProducerConfig::default() };
    transactional.validate().unwrap();
}

#[test]
fn contradicting_settings_name_their_field() {
    let base = ProducerConfig::default();
    let cases = [
        (ProducerConfig { acks: Acks::Leader, ..base.clone() }, "acks"),
        (ProducerConfig { idempotent: false, transactional_id: Some("t".into()), ..base.clone() }, "idempotent"),
        (ProducerConfig { transactional_id: Some(String::new()), ..base.clone() }, "transactional_id"),
        (ProducerConfig { max_batch_bytes: 0, ..base.clone() }, "max_batch_bytes"),
        (ProducerConfig { request_timeout: Duration::ZERO, ..base.clone() }, "request_timeout"),
        (ProducerConfig { transaction_timeout: Duration::ZERO, ..base.clone() }, "transaction_timeout"),
        (ProducerConfig { delivery_timeout: Duration::from_secs(30), ..base.clone() }, "delivery_timeout"),
    ];
    for (config, field) in cases {
        assert_eq!(invalid_field(&config), field, "{config:?}");
    }
    // Without idempotence any acks will do.
    ProducerConfig { idempotent: false, acks: Acks::Leader, ..base }.validate().unwrap();
}

#[test]
fn compression_names_parse() {
    for (name, expected) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("LZ4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        assert_eq!(name.parse::<Compression>().unwrap(), expected);
    }
    assert!(matches!("brotli".parse::<Compression>(), Err(ProducerError::InvalidConfig { field: "compression", .. })));
}
