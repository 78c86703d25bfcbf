use super::*;
use crate::registry::state::RecordEffect;

fn avro(fields: &str) -> AvroSchema {
    AvroSchema::parse(&format!(r#"{{"type":"record","name":"r","fields":[{fields}]}}"#)).unwrap()
}

fn v1() -> AvroSchema {
    avro(r#"{"name":"a","type":"int"}"#)
}

fn v2() -> AvroSchema {
    avro(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":""}"#)
}

/// A state and the next offset: plans are applied as the log would apply them.
#[derive(Default)]
struct Registry {
    state: State,
    offset: i64,
}

impl Registry {
    fn commit<T>(&mut self, plan: Result<Plan<T>, ApiErrorReply>) -> Result<T, ApiErrorReply> {
        match plan? {
            Plan::Ready(answer) => Ok(answer),
            Plan::Write { records, answer, claim } => {
                for (key, value) in records {
                    let applied = self.state.apply(self.offset, Some(&key), value.as_ref());
                    assert_eq!(applied, RecordEffect::Changed);
                    self.offset += 1;
                }
                if let Some(claim) = claim {
                    assert!(claim.held(&self.state));
                }
                Ok(answer)
            }
        }
    }

    fn register(&mut self, subject: &str, schema: &AvroSchema) -> Result<i32, ApiErrorReply> {
        let plan = register(&self.state, subject, schema, "w");
        self.commit(plan)
    }
}

#[test]
fn register_assigns_ids_and_versions_once() {
    let mut r = Registry::default();
    assert_eq!(r.register("s", &v1()).unwrap(), 1);
    assert!(matches!(register(&r.state, "s", &v1(), "w").unwrap(), Plan::Ready(1)), "same schema again: same id");
    assert_eq!(r.register("s", &v2()).unwrap(), 2);
    assert_eq!(r.register("t", &v2()).unwrap(), 2, "the same schema under another subject shares its id");
    assert_eq!(r.state.versions("s", false).unwrap(), [1, 2]);
    assert_eq!(r.state.versions("t", false).unwrap(), [1]);
    assert_eq!(r.register("u", &avro(r#"{"name":"z","type":"long"}"#)).unwrap(), 3);
}

#[test]
fn incompatible_schemas_are_refused_under_the_subject_level() {
    let mut r = Registry::default();
    r.register("s", &v1()).unwrap();
    let no_default = avro(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#);
    let error = r.register("s", &no_default).unwrap_err();
    assert_eq!((error.status.as_u16(), error.code), (409, 409));
    assert!(error.message.contains("\"s\""), "{}", error.message);
    r.commit(Ok(set_level(Some("s"), CompatibilityLevel::Forward))).unwrap();
    assert_eq!(r.register("s", &no_default).unwrap(), 2);
    assert_eq!(r.register("s", &v1()).unwrap(), 1, "v1 is still live: registering it again is a no-op");
}

#[test]
fn register_after_soft_delete_continues_the_version_numbers() {
    let mut r = Registry::default();
    r.register("s", &v1()).unwrap();
    assert_eq!(r.commit(delete_subject(&r.state, "s", false)).unwrap(), [1]);
    assert_eq!(r.register("s", &v1()).unwrap(), 1, "the id of the schema is kept");
    assert_eq!(r.state.versions("s", false).unwrap(), [2]);
    assert_eq!(r.state.versions("s", true).unwrap(), [1, 2]);
}

#[test]
fn subject_deletes_follow_confluent_rules() {
    let mut r = Registry::default();
    assert_eq!(delete_subject(&r.state, "s", false).unwrap_err().code, 40401);
    r.register("s", &v1()).unwrap();
    r.register("s", &v2()).unwrap();
    r.commit(Ok(set_level(Some("s"), CompatibilityLevel::None))).unwrap();
    assert_eq!(delete_subject(&r.state, "s", true).unwrap_err().code, 40405);
    assert_eq!(r.commit(delete_subject(&r.state, "s", false)).unwrap(), [1, 2]);
    assert_eq!(delete_subject(&r.state, "s", false).unwrap_err().code, 40404);
    assert!(r.state.schema_by_id(1).is_some());
    assert_eq!(r.commit(delete_subject(&r.state, "s", true)).unwrap(), [1, 2]);
    assert!(!r.state.has_subject("s", true));
    assert!(r.state.schema_by_id(1).is_none());
    assert_eq!(r.state.subject_level("s"), None, "a permanent delete takes the subject's level too");
    assert_eq!(r.register("s", &v2()).unwrap(), 3, "ids are not reused while the log remembers them");
    assert_eq!(r.state.versions("s", false).unwrap(), [1]);
}

#[test]
fn version_deletes_follow_confluent_rules() {
    let mut r = Registry::default();
    r.register("s", &v1()).unwrap();
    r.register("s", &v2()).unwrap();
    let n = Version::Number;
    assert_eq!(delete_version(&r.state, "s", n(3), false).unwrap_err().code, 40402);
    assert_eq!(delete_version(&r.state, "nope", n(1), false).unwrap_err().code, 40401);
    assert_eq!(delete_version(&r.state, "s", n(1), true).unwrap_err().code, 40407);
    assert_eq!(r.commit(delete_version(&r.state, "s", n(1), false)).unwrap(), 1);
    assert_eq!(delete_version(&r.state, "s", n(1), false).unwrap_err().code, 40406);
    assert_eq!(r.commit(delete_version(&r.state, "s", Version::Latest, false)).unwrap(), 2);
    assert_eq!(r.commit(delete_version(&r.state, "s", n(1), true)).unwrap(), 1);
    assert_eq!(r.state.versions("s", true).unwrap(), [2]);
    assert_eq!(r.commit(delete_version(&r.state, "s", Version::Latest, true)).unwrap(), 2);
    assert!(!r.state.has_subject("s", true));
}

#[test]
fn levels_set_and_reset() {
    let mut r = Registry::default();
    assert_eq!(delete_level(&r.state, Some("s")).unwrap_err().code, 40408);
    r.commit(Ok(set_level(None, CompatibilityLevel::Full))).unwrap();
    r.commit(Ok(set_level(Some("s"), CompatibilityLevel::None))).unwrap();
    assert_eq!(r.state.level("s"), CompatibilityLevel::None);
    assert_eq!(r.state.level("t"), CompatibilityLevel::Full);
    assert_eq!(r.commit(delete_level(&r.state, Some("s"))).unwrap(), CompatibilityLevel::None);
    assert_eq!(r.state.level("s"), CompatibilityLevel::Full);
    assert_eq!(r.commit(delete_level(&r.state, None)).unwrap(), CompatibilityLevel::Full);
    assert_eq!(r.state.global_level(), CompatibilityLevel::Backward);
}

#[test]
fn a_lost_race_is_visible_in_the_claim() {
    // Two writers plan against the same state; the first record wins the version.
    let mut r = Registry::default();
    let Plan::Write { records: a, claim: Some(claim_a), .. } = register(&r.state, "s", &v1(), "a").unwrap() else {
        panic!("a write")
    };
    let Plan::Write { records: b, claim: Some(claim_b), .. } = register(&r.state, "s", &v2(), "b").unwrap() else {
        panic!("a write")
    };
    r.state.apply(0, Some(&a[0].0), a[0].1.as_ref());
    assert!(matches!(r.state.apply(1, Some(&b[0].0), b[0].1.as_ref()), RecordEffect::Ignored(_)));
    assert!(claim_a.held(&r.state));
    assert!(!claim_b.held(&r.state));
}
