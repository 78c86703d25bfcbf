//! The registry's state: what the `_schemas` log says, applied record by record.
//!
//! Every instance applies the same records in the same (offset) order with
//! the same rules, so every instance ends in the same state, and a restart
//! rebuilds it exactly. The rules settle races between instances without a
//! leader:
//! - a record for a version that another key already holds is ignored: the
//!   earlier record won the version;
//! - a record that gives an id already used by a different schema is ignored:
//!   the earlier record won the id;
//! - a record with the same key as an applied one replaces it (soft delete),
//!   and a tombstone removes it (permanent delete), as compaction would.
//!
//! A writer whose record was ignored sees it once it has read the log past its
//! own record (see [`super::store`]), removes it with a tombstone and tries again.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

pub use crate::avro::Version;

use super::compat::CompatibilityLevel;
use super::error::ApiErrorReply;
use super::record::{decode_config, decode_delete_subject, LogKey, SchemaValue};
use super::schema::AvroSchema;

/// One version of one subject.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The global schema id.
    pub id: i32,
    /// The schema.
    pub schema: AvroSchema,
    /// Soft-deleted: hidden unless asked for, still readable by id.
    pub deleted: bool,
    /// The offset of the record that set it.
    pub offset: i64,
    /// The exact key bytes of that record (a tombstone must repeat them).
    pub key: Bytes,
}

/// Parses a version as a request names it: `latest`, `-1` or a positive
/// integer (the client's [`Version`], one type for both sides of the API);
/// anything else is 42202.
pub fn parse_version(text: &str) -> Result<Version, ApiErrorReply> {
    if text == "latest" {
        return Ok(Version::Latest);
    }
    match text.parse::<i32>() {
        Ok(-1) => Ok(Version::Latest),
        Ok(n) if n >= 1 => Ok(Version::Number(n)),
        _ => Err(ApiErrorReply::invalid_version(text)),
    }
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEffect {
    /// The state changed.
    Changed,
    /// The record lost a race (or contradicts the state) and was ignored.
    Ignored(String),
    /// The record is of a kind the registry does not use, or could not be read.
    Skipped(String),
}

/// Everything the log says.
#[derive(Debug, Default)]
pub struct State {
    subjects: BTreeMap<String, BTreeMap<i32, StoredVersion>>,
    /// (subject, version) of every version with a given id; all share one schema.
    by_id: BTreeMap<i32, BTreeSet<(String, i32)>>,
    levels: BTreeMap<String, CompatibilityLevel>,
    global: Option<CompatibilityLevel>,
    max_id: i32,
}

impl State {
    /// Applies the record at `offset`; a `None` value is a tombstone.
    pub fn apply(&mut self, offset: i64, key: Option<&Bytes>, value: Option<&Bytes>) -> RecordEffect {
        let Some(key_bytes) = key else {
            return RecordEffect::Skipped("record without key".into());
        };
        let key = match LogKey::decode(key_bytes) {
            Ok(key) => key,
            Err(e) => return RecordEffect::Skipped(e.to_string()),
        };
        match (key, value) {
            (LogKey::Schema { subject, version, .. }, None) => self.remove_version(&subject, version, key_bytes),
            (LogKey::Schema { subject, version, .. }, Some(value)) => {
                self.put_version(offset, subject, version, key_bytes, value)
            }
            (LogKey::Config { subject }, value) => self.put_level(subject, value),
            (LogKey::DeleteSubject { subject }, Some(value)) => match decode_delete_subject(value) {
                Ok(up_to) => {
                    for (_, v) in self.subjects.get_mut(&subject).into_iter().flatten().filter(|(n, _)| **n <= up_to) {
                        v.deleted = true;
                    }
                    RecordEffect::Changed
                }
                Err(e) => RecordEffect::Skipped(e.to_string()),
            },
            (LogKey::DeleteSubject { .. }, None) => RecordEffect::Skipped("DELETE_SUBJECT tombstone".into()),
            (LogKey::Other(kind), _) => RecordEffect::Skipped(format!("key type {kind}")),
        }
    }

    fn put_version(&mut self, offset: i64, subject: String, version: i32, key: &Bytes, value: &Bytes) -> RecordEffect {
        let value = match SchemaValue::decode(value) {
            Ok(value) => value,
            Err(e) => return RecordEffect::Skipped(e.to_string()),
        };
        // Ids are never handed out twice by one instance, even for ignored records.
        self.max_id = self.max_id.max(value.id);
        let schema = match AvroSchema::parse(&value.schema) {
            Ok(schema) => schema,
            Err(e) => return RecordEffect::Skipped(format!("{subject} version {version}: invalid schema: {e}")),
        };
        if let Some(existing) = self.subjects.get(&subject).and_then(|s| s.get(&version)) {
            if existing.key != *key {
                return RecordEffect::Ignored(format!(
                    "{subject} version {version} was taken at offset {}",
                    existing.offset
                ));
            }
        }
        if let Some(owner) = self.schema_by_id(value.id) {
            let same_entry = self
                .by_id
                .get(&value.id)
                .is_some_and(|set| set.len() == 1 && set.contains(&(subject.clone(), version)));
            if !same_entry && owner.identity() != schema.identity() {
                return RecordEffect::Ignored(format!("id {} belongs to another schema", value.id));
            }
        }
        if let Some(old) = self.subjects.get(&subject).and_then(|s| s.get(&version)) {
            let old_id = old.id;
            self.unindex(old_id, &subject, version);
        }
        self.by_id.entry(value.id).or_default().insert((subject.clone(), version));
        let entry = StoredVersion { id: value.id, schema, deleted: value.deleted, offset, key: key.clone() };
        self.subjects.entry(subject).or_default().insert(version, entry);
        RecordEffect::Changed
    }

    fn remove_version(&mut self, subject: &str, version: i32, key: &Bytes) -> RecordEffect {
        let Some(versions) = self.subjects.get_mut(subject) else {
            return RecordEffect::Ignored(format!("{subject} has no version {version}"));
        };
        match versions.get(&version) {
            Some(v) if v.key == *key => {
                let id = v.id;
                versions.remove(&version);
                if versions.is_empty() {
                    self.subjects.remove(subject);
                }
                self.unindex(id, subject, version);
                RecordEffect::Changed
            }
            // The tombstone of a record that lost its race: nothing was applied.
            _ => RecordEffect::Ignored(format!("{subject} version {version} is held by another key")),
        }
    }

    fn unindex(&mut self, id: i32, subject: &str, version: i32) {
        if let Some(set) = self.by_id.get_mut(&id) {
            set.remove(&(subject.to_string(), version));
            if set.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }

    fn put_level(&mut self, subject: Option<String>, value: Option<&Bytes>) -> RecordEffect {
        let level = match value.map(|v| decode_config(v)).transpose() {
            Ok(level) => level,
            Err(e) => return RecordEffect::Skipped(e.to_string()),
        };
        match (subject, level) {
            (None, level) => self.global = level,
            (Some(subject), Some(level)) => {
                self.levels.insert(subject, level);
            }
            (Some(subject), None) => {
                self.levels.remove(&subject);
            }
        }
        RecordEffect::Changed
    }

    /// The highest id any record of the log gave.
    pub fn max_id(&self) -> i32 {
        self.max_id
    }

    /// Every version of `subject`, soft-deleted ones included, by number.
    pub fn all_versions(&self, subject: &str) -> impl Iterator<Item = (i32, &StoredVersion)> {
        self.subjects.get(subject).into_iter().flatten().map(|(n, v)| (*n, v))
    }

    /// The live (not soft-deleted) versions of `subject`, oldest first.
    pub fn live_versions(&self, subject: &str) -> impl Iterator<Item = (i32, &StoredVersion)> {
        self.all_versions(subject).filter(|(_, v)| !v.deleted)
    }

    /// Whether `subject` has a version (a live one unless `deleted`).
    pub fn has_subject(&self, subject: &str, deleted: bool) -> bool {
        self.all_versions(subject).any(|(_, v)| deleted || !v.deleted)
    }

    /// Subject names, sorted; with `deleted`, soft-deleted subjects too.
    pub fn subjects(&self, deleted: bool, prefix: &str) -> Vec<String> {
        self.subjects.keys().filter(|s| s.starts_with(prefix) && self.has_subject(s, deleted)).cloned().collect()
    }

    /// The version numbers of `subject` (40401 when it has none).
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, ApiErrorReply> {
        let versions: Vec<i32> =
            self.all_versions(subject).filter(|(_, v)| deleted || !v.deleted).map(|(n, _)| n).collect();
        if versions.is_empty() {
            return Err(ApiErrorReply::subject_not_found(subject));
        }
        Ok(versions)
    }

    /// One version of `subject` (40401 / 40402 when missing).
    pub fn version(&self, subject: &str, spec: Version, deleted: bool) -> Result<(i32, &StoredVersion), ApiErrorReply> {
        if !self.has_subject(subject, deleted) {
            return Err(ApiErrorReply::subject_not_found(subject));
        }
        let mut visible = self.all_versions(subject).filter(|(_, v)| deleted || !v.deleted);
        let found = match spec {
            Version::Latest => visible.last(),
            Version::Number(n) => visible.find(|(m, _)| *m == n),
        };
        found.ok_or_else(|| ApiErrorReply::version_not_found(if let Version::Number(n) = spec { n } else { -1 }))
    }

    /// The schema with this id (soft-deleted versions still count: old data must stay readable).
    pub fn schema_by_id(&self, id: i32) -> Option<&AvroSchema> {
        let (subject, version) = self.by_id.get(&id)?.iter().next()?;
        self.subjects.get(subject)?.get(version).map(|v| &v.schema)
    }

    /// The (subject, version) pairs that use this id.
    pub fn versions_of_id(&self, id: i32, deleted: bool) -> Vec<(String, i32)> {
        let Some(set) = self.by_id.get(&id) else { return Vec::new() };
        set.iter()
            .filter(|(s, n)| deleted || self.subjects.get(s).and_then(|vs| vs.get(n)).is_some_and(|v| !v.deleted))
            .cloned()
            .collect()
    }

    /// The lowest id of a stored schema with this identity.
    pub fn id_of(&self, schema: &AvroSchema) -> Option<i32> {
        self.subjects
            .values()
            .flat_map(|vs| vs.values())
            .filter(|v| v.schema.identity() == schema.identity())
            .map(|v| v.id)
            .min()
    }

    /// The newest version of `subject` that is `schema` (40401 / 40403 when none).
    pub fn lookup(
        &self,
        subject: &str,
        schema: &AvroSchema,
        deleted: bool,
    ) -> Result<(i32, &StoredVersion), ApiErrorReply> {
        if !self.has_subject(subject, deleted) {
            return Err(ApiErrorReply::subject_not_found(subject));
        }
        self.all_versions(subject)
            .filter(|(_, v)| (deleted || !v.deleted) && v.schema.identity() == schema.identity())
            .last()
            .ok_or_else(ApiErrorReply::schema_not_found)
    }

    /// The subject's own level, if it has one.
    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.levels.get(subject).copied()
    }

    /// The global level (BACKWARD unless set).
    pub fn global_level(&self) -> CompatibilityLevel {
        self.global.unwrap_or_default()
    }

    /// The level that applies to `subject`: its own, else the global one.
    pub fn level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject).unwrap_or_else(|| self.global_level())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
