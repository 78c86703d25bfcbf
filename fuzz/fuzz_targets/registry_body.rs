//! Request bodies of kfn's Schema Registry: what POST
//! /subjects/{subject}/versions, POST /subjects/{subject} and POST
//! /compatibility/... parse (`schema_body`: the JSON object, `schemaType`,
//! `references`, then the Avro schema itself), the compatibility check a
//! parsed schema then goes through, and the level of PUT /config.
//!
//! The first byte picks a shipped schema as the registered version and a
//! compatibility level; the rest is the body. Properties: no panic, a
//! refused body is a 400 or a 422 with a message, a parsed schema's identity
//! is a schema with the same identity, and the check answers at every level.

#![no_main]

use std::sync::OnceLock;

use kfn::registry::api::{schema_body, ApiRequest};
use kfn::registry::compat::{check, CompatibilityLevel};
use kfn::registry::schema::AvroSchema;
use libfuzzer_sys::fuzz_target;

const FILES: &[&str] = &[
    include_str!("../../schemas/order_created.avsc"),
    include_str!("../../schemas/order_status.avsc"),
    include_str!("../../schemas/order_metrics.avsc"),
    include_str!("../../schemas/product_change.avsc"),
];

fn registered() -> &'static [AvroSchema] {
    static SCHEMAS: OnceLock<Vec<AvroSchema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| FILES.iter().map(|text| AvroSchema::parse(text).expect("a shipped schema parses")).collect())
}

fuzz_target!(|data: &[u8]| {
    // apache-avro panics on some invalid names; `AvroSchema::parse` catches
    // that and refuses the schema, so only a panic that escapes is a crash
    // (libfuzzer-sys aborts on those). Its hook would abort on caught ones too.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let request = ApiRequest {
        method: hyper::Method::POST,
        segments: vec!["subjects".into(), "orders.created-value".into(), "versions".into()],
        query: Vec::new(),
        body: body.to_vec().into(),
    };
    // PUT /config: the level named in the body.
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(name) = map.get("compatibility").and_then(serde_json::Value::as_str) {
            if let Ok(level) = name.parse::<CompatibilityLevel>() {
                assert_eq!(level.as_str().parse::<CompatibilityLevel>().ok(), Some(level));
            }
        }
    }
    let schema = match schema_body(&request) {
        Ok(schema) => schema,
        Err(refused) => {
            assert!(matches!(refused.code, 400 | 42201), "{refused:?}");
            assert!(refused.status.is_client_error(), "{refused:?}");
            assert!(!refused.message.is_empty());
            return;
        }
    };
    let again = AvroSchema::parse(schema.identity()).expect("a schema's identity is a schema");
    assert_eq!(again.identity(), schema.identity(), "the identity is stable");
    let registered = registered();
    let previous = &registered[usize::from(choice) % registered.len()];
    let level = CompatibilityLevel::ALL[usize::from(choice / 4) % CompatibilityLevel::ALL.len()];
    let _ = check(level, &schema, &[previous]);
    // Against itself, every level is compatible.
    for level in CompatibilityLevel::ALL {
        let messages = check(level, &schema, &[&schema]);
        assert!(messages.is_empty(), "{level:?}: a schema is incompatible with itself: {messages:?}");
    }
});
