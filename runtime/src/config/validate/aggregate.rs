//! Validation of aggregates: the fold, its table topic, window, grace and pull query.

use std::time::Duration;

use indexmap::IndexMap;

use super::super::raw::RawQuery;
use super::super::{AggregateSpec, CleanupPolicy, TopicSpec};
use super::Validator;

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
        fold: &Option<String>,
        input: Option<&str>,
        outputs: &IndexMap<String, String>,
        window: &Option<String>,
        grace: &Option<String>,
        query: &Option<RawQuery>,
        topics: &IndexMap<String, TopicSpec>,
    ) -> Option<AggregateSpec> {
        let Some(fold) = fold else {
            for (field, set) in [("window", window.is_some()), ("grace", grace.is_some()), ("query", query.is_some())] {
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
            if let Some(input_spec) = input.and_then(|i| topics.get(i)) {
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
        Some(AggregateSpec { table, window, grace, query_path })
    }
}
