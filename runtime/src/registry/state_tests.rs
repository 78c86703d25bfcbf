use bytes::Bytes;

use super::*;
use crate::registry::record::{encode_config, LogKey, SchemaValue};

fn schema(name: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","fields":[{{"name":"a","type":"int"}}]}}"#)
}

fn key(subject: &str, version: i32, writer: &str) -> Bytes {
    LogKey::schema(subject, version, writer).encode()
}

fn value(subject: &str, version: i32, id: i32, schema: &str, deleted: bool) -> Bytes {
    SchemaValue { subject: subject.into(), version, id, schema: schema.into(), deleted }.encode()
}

/// A log: records at offsets 0, 1, 2, ...
#[derive(Default)]
struct Log(Vec<(Bytes, Option<Bytes>)>);

impl Log {
    fn push(&mut self, key: Bytes, value: Option<Bytes>) -> &mut Self {
        self.0.push((key, value));
        self
    }

    fn replay(&self) -> (State, Vec<RecordEffect>) {
        let mut state = State::default();
        let applied = self.0.iter().enumerate().map(|(o, (k, v))| state.apply(o as i64, Some(k), v.as_ref())).collect();
        (state, applied)
    }

    /// What a compacted topic keeps: the last record of each key at its
    /// offset, tombstones dropped (after delete.retention.ms).
    fn compacted(&self) -> Vec<(i64, Bytes, Bytes)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(o, (k, _))| !self.0[o + 1..].iter().any(|(later, _)| later == k))
            .filter_map(|(o, (k, v))| v.clone().map(|v| (o as i64, k.clone(), v)))
            .collect()
    }
}

/// Everything a client can observe.
fn observe(state: &State) -> String {
    let mut out = String::new();
    for subject in state.subjects(true, "") {
        for (n, v) in state.all_versions(&subject) {
            out += &format!("{subject} v{n} id{} deleted={} {}\n", v.id, v.deleted, v.schema.identity());
        }
        out += &format!("{subject} level {:?}\n", state.subject_level(&subject));
    }
    for id in 1..=state.max_id() {
        out += &format!("id{id} -> {:?}\n", state.schema_by_id(id).map(|s| s.identity().to_string()));
    }
    out + &format!("global {}\n", state.global_level())
}

fn replay_compacted(log: &Log) -> State {
    let mut state = State::default();
    for (o, k, v) in log.compacted() {
        state.apply(o, Some(&k), Some(&v));
    }
    state
}

#[test]
fn versions_ids_and_levels_follow_the_log() {
    let mut log = Log::default();
    log.push(key("s", 1, "w"), Some(value("s", 1, 1, &schema("A"), false)))
        .push(key("s", 2, "w"), Some(value("s", 2, 2, &schema("B"), false)))
        .push(key("t", 1, "w"), Some(value("t", 1, 1, &schema("A"), false)))
        .push(LogKey::config(Some("s")).encode(), Some(encode_config(CompatibilityLevel::Full)))
        .push(LogKey::config(None).encode(), Some(encode_config(CompatibilityLevel::None)));
    let (state, applied) = log.replay();
    assert!(applied.iter().all(|a| *a == RecordEffect::Changed), "{applied:?}");
    assert_eq!(state.subjects(false, ""), ["s", "t"]);
    assert_eq!(state.versions("s", false).unwrap(), [1, 2]);
    assert_eq!(state.version("s", Version::Latest, false).unwrap().1.id, 2);
    assert_eq!(state.versions_of_id(1, false), [("s".to_string(), 1), ("t".to_string(), 1)]);
    assert!(state.schema_by_id(2).unwrap().text().contains("\"B\""));
    assert_eq!(state.level("s"), CompatibilityLevel::Full);
    assert_eq!(state.level("t"), CompatibilityLevel::None);
    assert_eq!(state.max_id(), 2);
}

#[test]
fn soft_delete_hides_and_tombstone_removes() {
    let mut log = Log::default();
    log.push(key("s", 1, "w"), Some(value("s", 1, 1, &schema("A"), false)))
        .push(key("s", 2, "w"), Some(value("s", 2, 2, &schema("B"), false)))
        .push(key("s", 1, "w"), Some(value("s", 1, 1, &schema("A"), true)));
    let (state, _) = log.replay();
    assert_eq!(state.versions("s", false).unwrap(), [2]);
    assert_eq!(state.versions("s", true).unwrap(), [1, 2]);
    assert_eq!(state.version("s", Version::Number(1), false).unwrap_err().code, 40402);
    assert!(state.schema_by_id(1).is_some(), "a soft-deleted schema stays readable by id");

    log.push(key("s", 1, "w"), None);
    let (state, applied) = log.replay();
    assert_eq!(applied[3], RecordEffect::Changed);
    assert_eq!(state.versions("s", true).unwrap(), [2]);
    assert!(state.schema_by_id(1).is_none());
    assert_eq!(state.max_id(), 2, "the id counter never goes back while the records are in the log");
}

#[test]
fn the_earlier_record_wins_a_version_and_compaction_agrees() {
    let mut log = Log::default();
    log.push(key("s", 1, "a"), Some(value("s", 1, 1, &schema("A"), false)))
        // Writer b raced for the same version with another schema.
        .push(key("s", 1, "b"), Some(value("s", 1, 1, &schema("B"), false)));
    let (state, applied) = log.replay();
    assert!(matches!(applied[1], RecordEffect::Ignored(_)), "{applied:?}");
    assert!(state.schema_by_id(1).unwrap().text().contains("\"A\""));
    // b notices, removes its record and registers again under a new version and id.
    log.push(key("s", 1, "b"), None).push(key("s", 2, "b"), Some(value("s", 2, 2, &schema("B"), false)));
    let (state, applied) = log.replay();
    assert!(matches!(applied[2], RecordEffect::Ignored(_)), "the loser's tombstone must not remove the winner");
    assert_eq!(state.versions("s", false).unwrap(), [1, 2]);
    assert_eq!(observe(&state), observe(&replay_compacted(&log)));
}

#[test]
fn the_earlier_record_wins_an_id() {
    let mut log = Log::default();
    log.push(key("s", 1, "a"), Some(value("s", 1, 7, &schema("A"), false)))
        .push(key("t", 1, "b"), Some(value("t", 1, 7, &schema("B"), false)))
        // The same schema under another subject shares the id: no conflict.
        .push(key("u", 1, "b"), Some(value("u", 1, 7, &schema("A"), false)));
    let (state, applied) = log.replay();
    assert!(matches!(applied[1], RecordEffect::Ignored(_)), "{applied:?}");
    assert_eq!(applied[2], RecordEffect::Changed);
    assert!(!state.has_subject("t", true));
    assert_eq!(state.versions_of_id(7, false).len(), 2);
    assert_eq!(state.max_id(), 7);
}

#[test]
fn a_soft_delete_after_the_winner_keeps_the_outcome_after_compaction() {
    // The winner's first record is compacted away once it is soft-deleted;
    // the loser cleaned up, so replaying the compacted log agrees.
    let mut log = Log::default();
    log.push(key("s", 1, "a"), Some(value("s", 1, 1, &schema("A"), false)))
        .push(key("s", 1, "b"), Some(value("s", 1, 1, &schema("B"), false)))
        .push(key("s", 1, "b"), None)
        .push(key("s", 1, "a"), Some(value("s", 1, 1, &schema("A"), true)))
        .push(LogKey::config(Some("s")).encode(), Some(encode_config(CompatibilityLevel::Forward)))
        .push(LogKey::config(Some("s")).encode(), None);
    let (state, _) = log.replay();
    assert_eq!(state.subject_level("s"), None);
    assert_eq!(observe(&state), observe(&replay_compacted(&log)));
}

#[test]
fn confluent_delete_subject_marks_versions_deleted() {
    let mut log = Log::default();
    log.push(
        LogKey::Schema { subject: "s".into(), version: 1, writer: None }.encode(),
        Some(value("s", 1, 1, &schema("A"), false)),
    )
    .push(
        LogKey::Schema { subject: "s".into(), version: 2, writer: None }.encode(),
        Some(value("s", 2, 2, &schema("B"), false)),
    )
    .push(
        LogKey::DeleteSubject { subject: "s".into() }.encode(),
        Some(Bytes::from_static(br#"{"subject":"s","version":1}"#)),
    );
    let (state, _) = log.replay();
    assert_eq!(state.versions("s", false).unwrap(), [2]);
}

#[test]
fn unreadable_records_are_skipped() {
    let mut state = State::default();
    let junk = Bytes::from_static(b"junk");
    assert!(matches!(state.apply(0, Some(&junk), Some(&junk)), RecordEffect::Skipped(_)));
    assert!(matches!(state.apply(1, None, Some(&junk)), RecordEffect::Skipped(_)));
    let bad_schema = value("s", 1, 1, "{\"type\":\"nope\"}", false);
    assert!(matches!(state.apply(2, Some(&key("s", 1, "w")), Some(&bad_schema)), RecordEffect::Skipped(_)));
    let noop = Bytes::from_static(br#"{"keytype":"NOOP","magic":0}"#);
    assert!(matches!(state.apply(3, Some(&noop), None), RecordEffect::Skipped(_)));
    assert!(state.subjects(true, "").is_empty());
}

#[test]
fn version_specs_parse_as_confluent() {
    assert_eq!(parse_version("latest").unwrap(), Version::Latest);
    assert_eq!(parse_version("-1").unwrap(), Version::Latest);
    assert_eq!(parse_version("3").unwrap(), Version::Number(3));
    for bad in ["0", "-2", "one", "", "2147483648", "1.5"] {
        assert_eq!(parse_version(bad).unwrap_err().code, 42202, "{bad}");
    }
}
