//! The registry verdicts for each answer a registry can give, and the readers
//! of a missing schemas folder. (The graph of the shipped order system is
//! tested with its handlers, in functions/tests/schema_graph.rs.)

use std::path::PathBuf;

use super::*;
use crate::avro::{ApiError, CompatibilityCheck, RegistryError};

#[test]
fn a_missing_schemas_folder_is_an_empty_set_of_readers() {
    let dir = tempfile::tempdir().unwrap();
    let readers = ReaderSchemas::from_dir(&dir.path().join("nothing-here")).unwrap();
    assert_eq!(readers.events().count(), 0);
}

fn api(status: u16, error_code: i32, message: &str) -> RegistryError {
    RegistryError::Api {
        method: "POST",
        url: "http://registry/compatibility/subjects/t-value/versions/latest".into(),
        error: ApiError { status, error_code, message: message.into() },
    }
}

#[test]
fn every_registry_answer_has_its_verdict() {
    let compatible = Ok(CompatibilityCheck { is_compatible: true, messages: vec![] });
    assert_eq!(Verdict::from_answer(compatible), Verdict::Compatible);
    let refused = Ok(CompatibilityCheck { is_compatible: false, messages: vec!["field x lacks a default".into()] });
    assert_eq!(
        Verdict::from_answer(refused),
        Verdict::Incompatible { level: None, messages: vec!["field x lacks a default".into()] }
    );
    assert_eq!(Verdict::from_answer(Err(api(404, 40401, "Subject 't-value' not found."))), Verdict::NewSubject);
    assert_eq!(Verdict::from_answer(Err(api(404, 40402, "Version latest not found."))), Verdict::NewSubject);
    assert_eq!(
        Verdict::from_answer(Err(api(409, 409, "incompatible"))),
        Verdict::Incompatible { level: None, messages: vec!["incompatible".into()] }
    );
    let failed = Verdict::from_answer(Err(api(401, 40101, "Unauthorized")));
    assert!(matches!(&failed, Verdict::Failed(m) if m.contains("401") && m.contains("Unauthorized")), "{failed:?}");
    assert!(!failed.is_ok());
    let broken = Verdict::from_answer(Err(api(422, 42201, "Invalid schema")));
    assert!(matches!(broken, Verdict::Failed(_)));
}

#[test]
fn an_incompatible_verdict_names_the_config_topic_subject_file_level_and_reasons() {
    let verdict = TopicVerdict {
        topic: "orders.created".into(),
        subject: "orders.created-value".into(),
        file: "schemas/order_created.avsc".into(),
        config: PathBuf::from("/srv/functions.toml"),
        verdict: Verdict::Incompatible { level: Some("FORWARD".into()), messages: vec!["a".into(), "b".into()] },
    };
    assert_eq!(
        verdict.to_string(),
        "/srv/functions.toml: topics.\"orders.created\".schema: topic \"orders.created\" (subject \
         orders.created-value, schemas/order_created.avsc) is not compatible with the latest version of the \
         subject under FORWARD: a; b"
    );
    let report = RegistryReport { url: "http://r".into(), topics: vec![verdict.clone()], not_asked: vec![] };
    assert!(!report.is_ok());
    assert_eq!(report.errors().count(), 1);
    let fine = TopicVerdict { verdict: Verdict::NewSubject, ..verdict };
    let mut report = RegistryReport { url: "http://r".into(), topics: vec![fine], not_asked: vec![] };
    assert!(report.is_ok());
    report.not_asked.push("orders.validated".into());
    assert!(!report.is_ok(), "a topic not asked about is not a pass");
}
