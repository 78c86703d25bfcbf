//! Validation of a function's input topics: `input = "t"` or `inputs = ["a", "b"]`,
//! and, for each, a handler registered for the topic's event type.

use indexmap::IndexMap;

use super::super::TopicSpec;
use super::Validator;

/// An input topic and the field it was written in (`functions.f.input` or `functions.f.inputs[i]`).
pub(super) type Input = (String, String);

impl Validator<'_> {
    /// The inputs as written, each with its field path; `Err` when the function
    /// is too broken to validate further (its error already recorded), `Ok(None)`
    /// when it has no input (an HTTP function).
    pub(super) fn inputs(
        &mut self,
        prefix: &str,
        input: Option<String>,
        inputs: Option<Vec<String>>,
    ) -> Result<Option<Vec<Input>>, ()> {
        match (input, inputs) {
            (None, None) => Ok(None),
            (Some(input), None) => Ok(Some(vec![(format!("{prefix}.input"), input)])),
            (Some(_), Some(_)) => {
                self.c.push(prefix, "expected either `input` (one topic) or `inputs` (several), not both");
                Err(())
            }
            (None, Some(list)) if list.is_empty() => {
                self.c.push(format!("{prefix}.inputs"), "expected at least one topic");
                Err(())
            }
            (None, Some(list)) => {
                let mut inputs: Vec<Input> = Vec::with_capacity(list.len());
                for (i, topic) in list.into_iter().enumerate() {
                    let field = format!("{prefix}.inputs[{i}]");
                    if let Some((first, _)) = inputs.iter().find(|(_, t)| *t == topic) {
                        self.c.push(&field, format!("expected each topic once, but {topic:?} is also {first}"));
                        continue;
                    }
                    inputs.push((field, topic));
                }
                Ok(Some(inputs))
            }
        }
    }

    /// The input topic's schema must name an event type `handler` takes
    /// (`events`: the types registered under its name, or a fold's one).
    pub(super) fn check_input_event(
        &mut self,
        field: &str,
        input: &str,
        handler: &str,
        events: &[&str],
        topics: &IndexMap<String, TopicSpec>,
    ) {
        // An undeclared topic was reported by topic_ref, an unreadable schema under the topic.
        let Some(topic) = topics.get(input) else { return };
        let takes = events.join(" or ");
        match &topic.event {
            None if topic.schema.is_none() => self
                .c
                .push(field, format!("expected topic {input:?} to declare a schema: {handler:?} takes {takes} events")),
            Some(found) if !events.contains(&found.as_str()) => self.c.push(
                field,
                format!(
                    "expected a topic of {takes} events (what {handler:?} is registered for), \
                     but {input:?} carries {found}"
                ),
            ),
            _ => {}
        }
    }
}
