//! Validation of topics: `[topic_defaults]`, each `[topics."name"]`, the
//! dead-letter topics kfn derives for functions that do not name one, and the
//! Idempotency-Key topics it derives for HTTP functions.
//!
//! A field a topic leaves out comes from `[topic_defaults]`; a field it sets
//! wins. An error in a default is reported once, under `topic_defaults.<field>`,
//! not again under every topic that inherits it.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::value::Value;
use indexmap::IndexMap;

use super::super::raw::{RawTopic, RawTopicDefaults};
use super::super::{parse_duration, CleanupPolicy, FunctionSpec, GroupBy, TopicFormat, TopicSpec};
use super::Validator;

/// The partitions of a derived dead-letter topic: letters are rare, and one
/// partition keeps them in the order they failed for `kfn dlq list`.
const DEAD_LETTER_PARTITIONS: i32 = 1;
/// How long a derived dead-letter topic keeps letters: long enough to notice and replay them.
const DEAD_LETTER_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// How long a derived repartition topic keeps records without a default
/// retention: the fold stage reads them within moments; a week covers an outage.
const REPARTITION_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// The partitions of a derived Idempotency-Key topic: every replica reads all
/// of them, and one request writes one small record, so few are plenty.
const IDEMPOTENCY_PARTITIONS: i32 = 3;
/// How long a derived Idempotency-Key topic remembers an answer: a day, as
/// long as clients of HTTP APIs are usually told to retry with one key.
const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// `[topic_defaults]`, validated. A default that was invalid holds a
/// fallback, so the topics that inherit it are not reported again.
#[derive(Debug, Default)]
pub(super) struct TopicDefaults {
    partitions: Option<i32>,
    replication: Option<i16>,
    /// `Some(None)`: records are kept forever.
    retention: Option<Option<Duration>>,
    cleanup_policy: Option<CleanupPolicy>,
    configs: BTreeMap<String, String>,
}

impl Validator<'_> {
    /// Validates `[topic_defaults]`; its errors name `topic_defaults.<field>`.
    pub(super) fn topic_defaults(&mut self, value: Option<Value>) -> TopicDefaults {
        let raw: RawTopicDefaults = self.section("topic_defaults", value);
        let prefix = "topic_defaults";
        TopicDefaults {
            partitions: raw.partitions.map(|p| self.partitions(prefix, p)),
            replication: raw.replication.map(|r| self.replication(prefix, r)),
            retention: raw.retention.as_deref().map(|r| self.retention(prefix, r)),
            cleanup_policy: raw.cleanup_policy.as_deref().map(|p| self.cleanup_policy(prefix, p)),
            configs: self.configs(prefix, raw.configs.unwrap_or_default()),
        }
    }

    pub(super) fn topics(&mut self, raw: BTreeMap<String, Value>) -> IndexMap<String, TopicSpec> {
        let mut topics = IndexMap::new();
        for (name, value) in raw {
            let prefix = format!("topics.\"{name}\"");
            if name.is_empty()
                || name.len() > 249
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                self.c.push(&prefix, "expected a topic name of 1-249 characters from [a-zA-Z0-9._-]");
            }
            let raw: RawTopic = match value.deserialize() {
                Ok(t) => t,
                Err(e) => {
                    self.c.figment(&prefix, e);
                    continue;
                }
            };
            let spec = self.topic(&prefix, name.clone(), raw);
            topics.insert(name, spec);
        }
        topics
    }

    fn topic(&mut self, prefix: &str, name: String, raw: RawTopic) -> TopicSpec {
        let partitions = match raw.partitions {
            Some(p) => self.partitions(prefix, p),
            None => self.inherited(prefix, "partitions", self.topic_defaults.partitions),
        };
        let replication = match raw.replication {
            Some(r) => self.replication(prefix, r),
            None => self.inherited(prefix, "replication", self.topic_defaults.replication),
        };
        let cleanup_policy = match raw.cleanup_policy.as_deref() {
            Some(p) => self.cleanup_policy(prefix, p),
            None => self.topic_defaults.cleanup_policy.unwrap_or(CleanupPolicy::Delete),
        };
        let retention = match raw.retention.as_deref() {
            Some(r) => self.retention(prefix, r),
            // A default retention is about deleting old records; a table keeps each key's last one.
            None if cleanup_policy == CleanupPolicy::Compact => None,
            None => self.topic_defaults.retention.flatten(),
        };
        let mut configs = self.topic_defaults.configs.clone();
        configs.extend(self.configs(prefix, raw.configs.unwrap_or_default()));
        let schema = raw.schema.map(|s| self.base.join(s));
        let event = schema.as_ref().and_then(|path| self.schema_file(&format!("{prefix}.schema"), path));
        let format = self.choice(
            &format!("{prefix}.format"),
            raw.format.as_deref(),
            TopicFormat::Avro,
            &[("avro", TopicFormat::Avro), ("json", TopicFormat::Json)],
        );
        TopicSpec {
            name,
            partitions,
            replication,
            retention,
            cleanup_policy,
            key: raw.key,
            schema,
            event,
            format,
            configs,
            doc: raw.doc,
        }
    }

    /// The dead-letter topic kfn creates for a function that does not name
    /// one: `[topic_defaults]`, then one partition, 30 days, delete (a
    /// compacted topic would keep only a key's last letter). Without a default
    /// replication it takes its input's, which the cluster can evidently meet.
    pub(super) fn dead_letter_topic(&self, name: String, function: &str, input: Option<&TopicSpec>) -> TopicSpec {
        let d = &self.topic_defaults;
        TopicSpec {
            name,
            partitions: DEAD_LETTER_PARTITIONS,
            replication: d.replication.or(input.map(|t| t.replication)).unwrap_or(1),
            retention: Some(DEAD_LETTER_RETENTION),
            cleanup_policy: CleanupPolicy::Delete,
            key: None,
            schema: None,
            event: None,
            format: TopicFormat::Avro,
            configs: d.configs.clone(),
            doc: Some(format!("Records function {function} gave up on, with kfn.* headers saying why.")),
        }
    }

    /// The internal topic kfn creates for an aggregate that regroups its input
    /// (`<function>.repartition`): as many partitions as the table (key k's
    /// records land in the partition of the table holding k's state), the
    /// input's schema (it carries the input's events), `[topic_defaults]`'s
    /// replication, retention (else 7 days) and configs, delete.
    pub(super) fn repartition_topic(
        &self,
        name: String,
        function: &FunctionSpec,
        topics: &IndexMap<String, TopicSpec>,
    ) -> Option<TopicSpec> {
        let table = topics.get(&function.aggregate.as_ref()?.table)?;
        let input = function.inputs().first().and_then(|i| topics.get(i))?;
        let d = &self.topic_defaults;
        let key = match &function.repartition()?.group_by {
            GroupBy::Field(field) => field.clone(),
            GroupBy::KeyFunction => format!("the key function of {}", function.handler),
        };
        Some(TopicSpec {
            name,
            partitions: table.partitions,
            replication: d.replication.unwrap_or(input.replication),
            retention: d.retention.unwrap_or(Some(REPARTITION_RETENTION)),
            cleanup_policy: CleanupPolicy::Delete,
            key: Some(key),
            schema: input.schema.clone(),
            event: input.event.clone(),
            format: TopicFormat::Avro,
            configs: d.configs.clone(),
            doc: Some(format!(
                "Internal: the inputs of aggregate {} keyed by its grouping key (written by its rekey stage).",
                function.name
            )),
        })
    }

    /// The Idempotency-Key topic kfn creates for an HTTP function that does
    /// not declare `<function>.idempotency`: `[topic_defaults]`' replication
    /// (else its first output's), 3 partitions, `compact,delete` with 24 h:
    /// one answer per key, forgotten a day after it was given.
    pub(super) fn idempotency_topic(&self, name: String, function: &str, output: Option<&TopicSpec>) -> TopicSpec {
        let d = &self.topic_defaults;
        TopicSpec {
            name,
            partitions: IDEMPOTENCY_PARTITIONS,
            replication: d.replication.or(output.map(|t| t.replication)).unwrap_or(1),
            retention: Some(IDEMPOTENCY_RETENTION),
            cleanup_policy: CleanupPolicy::CompactDelete,
            key: None,
            schema: None,
            event: None,
            format: TopicFormat::Json,
            configs: d.configs.clone(),
            doc: Some(format!(
                "The answers HTTP function {function} gave, by Idempotency-Key (JSON; kfn's, compacted, kept 24 h)."
            )),
        }
    }

    /// A field the topic left out: the default, or an error naming both places it could be set.
    fn inherited<T: Copy + From<u8>>(&mut self, prefix: &str, field: &str, default: Option<T>) -> T {
        default.unwrap_or_else(|| {
            self.c
                .push(format!("{prefix}.{field}"), format!("missing: expected `{field}` here or in [topic_defaults]"));
            T::from(1)
        })
    }

    fn partitions(&mut self, prefix: &str, raw: i64) -> i32 {
        match i32::try_from(raw) {
            Ok(p) if (1..=100_000).contains(&p) => p,
            _ => {
                self.c
                    .push(format!("{prefix}.partitions"), format!("expected an integer from 1 to 100000, found {raw}"));
                1
            }
        }
    }

    fn replication(&mut self, prefix: &str, raw: i64) -> i16 {
        match i16::try_from(raw) {
            Ok(r) if r >= 1 => r,
            _ => {
                self.c.push(format!("{prefix}.replication"), format!("expected an integer of at least 1, found {raw}"));
                1
            }
        }
    }

    /// `None`: kept forever (as asked, or after an error already reported).
    fn retention(&mut self, prefix: &str, text: &str) -> Option<Duration> {
        match text {
            "forever" | "infinite" => None,
            text => match parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) => Some(d),
                Ok(d) => {
                    self.c.push(format!("{prefix}.retention"), format!("expected at least 1s, found {d:?}"));
                    None
                }
                Err(e) => {
                    self.c.push(format!("{prefix}.retention"), format!("expected {e} or \"forever\""));
                    None
                }
            },
        }
    }

    fn cleanup_policy(&mut self, prefix: &str, text: &str) -> CleanupPolicy {
        self.choice(
            &format!("{prefix}.cleanup_policy"),
            Some(text),
            CleanupPolicy::Delete,
            &[
                ("delete", CleanupPolicy::Delete),
                ("compact", CleanupPolicy::Compact),
                ("compact,delete", CleanupPolicy::CompactDelete),
            ],
        )
    }

    fn configs(&mut self, prefix: &str, configs: BTreeMap<String, String>) -> BTreeMap<String, String> {
        for key in configs.keys() {
            if matches!(key.as_str(), "retention.ms" | "cleanup.policy") {
                self.c.push(
                    format!("{prefix}.configs.\"{key}\""),
                    "expected no duplicate of a typed field: use `retention` or `cleanup_policy` instead",
                );
            }
        }
        configs
    }
}
