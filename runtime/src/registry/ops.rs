//! What each write request means for the log: the records to append and the
//! answer to give once they are applied, planned against the current state.
//!
//! Planning is pure (no I/O), so the rules are tested here with plain state;
//! [`super::store`] appends the records and re-plans when a record lost a race.

use bytes::Bytes;

use super::compat::{check, CompatibilityLevel};
use super::error::ApiErrorReply;
use super::record::{encode_config, LogKey, SchemaValue};
use super::schema::AvroSchema;
use super::state::{State, Version};

/// One record to append: key and value (`None`: tombstone).
pub type LogRecord = (Bytes, Option<Bytes>);

/// A version the writer must still hold once its records are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: i32,
    /// The key the writer wrote it with.
    pub key: Bytes,
}

impl Claim {
    /// Whether `state` gives the version to this claim's key.
    pub fn held(&self, state: &State) -> bool {
        state.all_versions(&self.subject).any(|(n, v)| n == self.version && v.key == self.key)
    }
}

/// What a write request comes to.
#[derive(Debug)]
pub enum Plan<T> {
    /// Nothing to write: answer at once.
    Ready(T),
    /// Append `records`, then answer `answer` if `claim` (when any) still holds.
    Write {
        /// The records, appended in order.
        records: Vec<LogRecord>,
        /// The answer once they are applied.
        answer: T,
        /// The version that must be this writer's for the answer to be true.
        claim: Option<Claim>,
    },
}

/// Registers `schema` under `subject`; the answer is its global id.
///
/// A schema the subject already has (live) keeps its id and version. A new
/// one must pass the subject's compatibility level against its live versions,
/// reuses the id of the same schema under any subject, else takes the highest
/// id seen + 1, and becomes the subject's highest version + 1.
pub fn register(state: &State, subject: &str, schema: &AvroSchema, writer: &str) -> Result<Plan<i32>, ApiErrorReply> {
    if let Some((_, existing)) = state.live_versions(subject).find(|(_, v)| v.schema.identity() == schema.identity()) {
        return Ok(Plan::Ready(existing.id));
    }
    let previous: Vec<&AvroSchema> = state.live_versions(subject).map(|(_, v)| &v.schema).collect();
    let messages = check(state.level(subject), schema, &previous);
    if !messages.is_empty() {
        return Err(ApiErrorReply::incompatible(subject, &messages));
    }
    let id = state.id_of(schema).unwrap_or_else(|| state.max_id().saturating_add(1));
    let version = state.all_versions(subject).map(|(n, _)| n).max().unwrap_or(0).saturating_add(1);
    let key = LogKey::schema(subject, version, writer).encode();
    let value =
        SchemaValue { subject: subject.to_string(), version, id, schema: schema.text().to_string(), deleted: false };
    Ok(Plan::Write {
        records: vec![(key.clone(), Some(value.encode()))],
        answer: id,
        claim: Some(Claim { subject: subject.to_string(), version, key }),
    })
}

/// Deletes every version of `subject`: soft (hidden, ids still readable), or
/// permanent (after a soft delete) with the subject's level. Answers the versions.
pub fn delete_subject(state: &State, subject: &str, permanent: bool) -> Result<Plan<Vec<i32>>, ApiErrorReply> {
    if !state.has_subject(subject, true) {
        return Err(ApiErrorReply::subject_not_found(subject));
    }
    let live = state.live_versions(subject).count();
    if permanent {
        if live > 0 {
            return Err(ApiErrorReply::subject_not_soft_deleted(subject));
        }
        let mut records: Vec<LogRecord> = state.all_versions(subject).map(|(_, v)| (v.key.clone(), None)).collect();
        if state.subject_level(subject).is_some() {
            records.push((LogKey::config(Some(subject)).encode(), None));
        }
        let answer = state.all_versions(subject).map(|(n, _)| n).collect();
        return Ok(Plan::Write { records, answer, claim: None });
    }
    if live == 0 {
        return Err(ApiErrorReply::subject_soft_deleted(subject));
    }
    let records =
        state.live_versions(subject).map(|(n, v)| (v.key.clone(), Some(deleted_value(subject, n, v)))).collect();
    let answer = state.live_versions(subject).map(|(n, _)| n).collect();
    Ok(Plan::Write { records, answer, claim: None })
}

/// Deletes one version: soft, or permanent after a soft delete. Answers its number.
pub fn delete_version(
    state: &State,
    subject: &str,
    spec: Version,
    permanent: bool,
) -> Result<Plan<i32>, ApiErrorReply> {
    if !state.has_subject(subject, permanent) {
        return Err(ApiErrorReply::subject_not_found(subject));
    }
    // A soft delete of "latest" means the latest live version; a numbered
    // version is looked up among deleted ones too, to answer 40406.
    let include_deleted = permanent || spec != Version::Latest;
    let (number, version) = state.version(subject, spec, include_deleted)?;
    match (permanent, version.deleted) {
        (false, true) => Err(ApiErrorReply::version_soft_deleted(subject, number)),
        (true, false) => Err(ApiErrorReply::version_not_soft_deleted(subject, number)),
        (true, true) => Ok(Plan::Write { records: vec![(version.key.clone(), None)], answer: number, claim: None }),
        (false, false) => Ok(Plan::Write {
            records: vec![(version.key.clone(), Some(deleted_value(subject, number, version)))],
            answer: number,
            claim: None,
        }),
    }
}

fn deleted_value(subject: &str, number: i32, version: &super::state::StoredVersion) -> Bytes {
    SchemaValue {
        subject: subject.to_string(),
        version: number,
        id: version.id,
        schema: version.schema.text().to_string(),
        deleted: true,
    }
    .encode()
}

/// Sets the global level (`subject` `None`) or a subject's.
pub fn set_level(subject: Option<&str>, level: CompatibilityLevel) -> Plan<CompatibilityLevel> {
    Plan::Write {
        records: vec![(LogKey::config(subject).encode(), Some(encode_config(level)))],
        answer: level,
        claim: None,
    }
}

/// Removes a subject's level (40408 when it has none) or resets the global
/// one to BACKWARD; answers the level that was set.
pub fn delete_level(state: &State, subject: Option<&str>) -> Result<Plan<CompatibilityLevel>, ApiErrorReply> {
    let previous = match subject {
        Some(s) => state.subject_level(s).ok_or_else(|| ApiErrorReply::subject_level_not_configured(s))?,
        None => state.global_level(),
    };
    Ok(Plan::Write { records: vec![(LogKey::config(subject).encode(), None)], answer: previous, claim: None })
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
