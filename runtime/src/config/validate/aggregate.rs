//! Validation of aggregates: the fold, its table topic, window, grace, pull
//! query, and how it regroups its input (`group_by` or a key function).

use std::time::Duration;

use indexmap::IndexMap;

use super::super::raw::RawQuery;
use super::super::{repartition_topic, AggregateSpec, CleanupPolicy, GroupBy, Repartition, TopicSpec};
use super::Validator;

/// The aggregate-only fields of a function as written.
pub(super) struct AggregateFields<'a> {
    pub window: &'a Option<String>,
    pub grace: &'a Option<String>,
    pub query: &'a Option<RawQuery>,
    pub group_by: &'a Option<String>,
}

/// The one output an aggregate has.
pub const TABLE_OUTPUT: &str = "table";

impl Validator<'_> {
    /// The fold must be registered and take the events of `input`.
    pub(super) fn check_fold(
        &mut self,
        prefix: &str,
        field: &str,
        input: &str,
        fold: &str,
        topics: &IndexMap<String, TopicSpec>,
    ) {
        match self.registry.aggregate_handler(fold) {
            Some(handler) => self.check_input_event(field, input, fold, &[handler.input], topics),
            None if self.registry.contains(fold) => self.c.push(
                format!("{prefix}.aggregate"),
                format!(
                    "expected a fold registered with Registry::aggregate, but {fold:?} is a handler (use `handler`)"
                ),
            ),
            None => {
                let known: Vec<_> = self.registry.aggregate_names().collect();
                self.c.push(
                    format!("{prefix}.aggregate"),
                    format!(
                        "expected a fold registered in functions/, found {fold:?} (registered folds: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// The aggregate part of a function, or errors for aggregate fields on a plain function.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn aggregate_spec(
        &mut self,
        prefix: &str,
        function: &str,
        fold: &Option<String>,
        inputs: &[String],
        outputs: &IndexMap<String, String>,
        fields: AggregateFields<'_>,
        topics: &IndexMap<String, TopicSpec>,
    ) -> Option<AggregateSpec> {
        let AggregateFields { window, grace, query, group_by } = fields;
        let Some(fold) = fold else {
            for (field, set) in [
                ("window", window.is_some()),
                ("grace", grace.is_some()),
                ("query", query.is_some()),
                ("group_by", group_by.is_some()),
            ] {
                if set {
                    self.c.push(
                        format!("{prefix}.{field}"),
                        "expected none: only an aggregate (`aggregate = \"fold\"`) has it",
                    );
                }
            }
            return None;
        };
        let table = match outputs.get(TABLE_OUTPUT) {
            Some(table) if outputs.len() == 1 => table.clone(),
            _ => {
                let found: Vec<_> = outputs.keys().map(String::as_str).collect();
                self.c.push(
                    format!("{prefix}.outputs"),
                    format!(
                        "expected exactly one output named `table` (the aggregate's table topic), found [{}]",
                        found.join(", ")
                    ),
                );
                return None;
            }
        };
        let repartition = self.repartition(prefix, function, fold, inputs, outputs, &table, group_by, topics);
        let field = format!("{prefix}.outputs.table");
        if let Some(spec) = topics.get(&table) {
            if spec.cleanup_policy != CleanupPolicy::Compact {
                self.c.push(
                    &field,
                    format!(
                        "expected topic {table:?} to have cleanup_policy = \"compact\": it holds the aggregate's state"
                    ),
                );
            }
            // A repartitioned aggregate's fold reads the internal topic, made (or checked) like the table.
            let input = inputs.first().filter(|_| repartition.is_none()).and_then(|i| topics.get(i));
            if let Some(input_spec) = input {
                if input_spec.partitions != spec.partitions {
                    self.c.push(
                        &field,
                        format!(
                            "expected topic {table:?} to have as many partitions as the input {:?} ({}), found {}: \
                             state of input partition p lives in table partition p",
                            input_spec.name, input_spec.partitions, spec.partitions
                        ),
                    );
                }
            }
            if let (Some(found), Some(handler)) = (&spec.event, self.registry.aggregate_handler(fold)) {
                if found != handler.state {
                    self.c.push(
                        &field,
                        format!(
                            "expected a topic of {} rows for fold {fold:?}, but {table:?} has another schema",
                            handler.state
                        ),
                    );
                }
            }
        }
        let window = window.as_deref().map(|w| {
            let d = self.duration(&format!("{prefix}.window"), Some(w), Duration::from_secs(3600));
            if d < Duration::from_millis(1) {
                self.c.push(format!("{prefix}.window"), format!("expected a window of at least 1ms, found {w:?}"));
            }
            d
        });
        let grace = self.duration(&format!("{prefix}.grace"), grace.as_deref(), Duration::ZERO);
        if window.is_none() && !grace.is_zero() {
            self.c.push(
                format!("{prefix}.grace"),
                "expected none: grace applies to windowed aggregates only (set `window`)",
            );
        }
        let query_path = query.as_ref().map(|q| {
            let path = q.http.path.trim_end_matches('/').to_string();
            if !path.starts_with('/') || path.contains('{') {
                self.c.push(
                    format!("{prefix}.query.http.path"),
                    format!("expected a path starting with '/' and without {{parameters}}, found {:?}", q.http.path),
                );
            }
            path
        });
        Some(AggregateSpec { table, window, grace, query_path, repartition })
    }

    /// How the aggregate regroups its input: by `group_by` (a string, long or
    /// int field of the input's schema), by the fold's key function, or not at all.
    #[allow(clippy::too_many_arguments)]
    fn repartition(
        &mut self,
        prefix: &str,
        function: &str,
        fold: &str,
        inputs: &[String],
        outputs: &IndexMap<String, String>,
        table: &str,
        group_by: &Option<String>,
        topics: &IndexMap<String, TopicSpec>,
    ) -> Option<Repartition> {
        let key_function = self.registry.aggregate_handler(fold).is_some_and(|h| h.key_function);
        let group_by = match (group_by, key_function) {
            (Some(_), true) => {
                self.c.push(
                    format!("{prefix}.group_by"),
                    format!(
                        "expected none: fold {fold:?} has a key function (Registry::aggregate_by), which gives the keys"
                    ),
                );
                GroupBy::KeyFunction
            }
            (Some(field), false) => {
                for (i, input) in inputs.iter().enumerate() {
                    self.group_by_field(prefix, i, field, input, topics);
                }
                GroupBy::Field(field.clone())
            }
            (None, true) => GroupBy::KeyFunction,
            (None, false) => return None,
        };
        let topic = repartition_topic(function);
        let field = format!("{prefix}.group_by");
        if inputs.contains(&topic) || outputs.values().any(|o| *o == topic) {
            self.c.push(
                &field,
                format!(
                    "expected {topic:?} to be the internal topic of the aggregate, but it is also its input or output"
                ),
            );
        }
        // A declared internal topic (to change its settings) must still put key k where the table does.
        if let (Some(declared), Some(table_spec)) = (topics.get(&topic), topics.get(table)) {
            if declared.partitions != table_spec.partitions {
                self.c.push(
                    format!("topics.\"{topic}\".partitions"),
                    format!(
                        "expected {} partitions like the table {table:?}: the internal topic of aggregate {function} \
                         feeds table partition p from its partition p, found {}",
                        table_spec.partitions, declared.partitions
                    ),
                );
            }
            let input_schema = inputs.first().and_then(|i| topics.get(i)).and_then(|t| t.event.as_ref());
            if declared.event.is_none() || declared.event.as_ref() != input_schema {
                self.c.push(
                    format!("topics.\"{topic}\".schema"),
                    format!(
                        "expected the schema of the input ({}): the internal topic carries the input's events",
                        input_schema.map_or("none", String::as_str)
                    ),
                );
            }
        }
        Some(Repartition { topic, group_by })
    }

    /// `group_by` must name a string, long or int field of input `i`'s record schema.
    fn group_by_field(
        &mut self,
        prefix: &str,
        i: usize,
        field: &str,
        input: &str,
        topics: &IndexMap<String, TopicSpec>,
    ) {
        // An undeclared input or unreadable schema was reported where it is.
        let Some(path) = topics.get(input).and_then(|t| t.schema.as_ref()) else { return };
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let Ok(apache_avro::Schema::Record(record)) = apache_avro::Schema::parse_str(&text) else { return };
        let event = record.name.fullname(None);
        let at = format!("{prefix}.group_by");
        let Some(found) = record.fields.iter().find(|f| f.name == field) else {
            let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            let which = if i == 0 { String::new() } else { format!(" (input {i})") };
            self.c.push(
                at,
                format!(
                    "expected a field of {event}, the events of {input:?}{which}, found {field:?} (its fields: {})",
                    names.join(", ")
                ),
            );
            return;
        };
        use apache_avro::Schema;
        if !matches!(found.schema, Schema::String | Schema::Long | Schema::Int) {
            let kind = apache_avro::schema::SchemaKind::from(&found.schema);
            self.c.push(
                at,
                format!(
                    "expected a string, long or int field of {event} to group by, but {field:?} is of type {kind:?}"
                ),
            );
        }
    }
}
