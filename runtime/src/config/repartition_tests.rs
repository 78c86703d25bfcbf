//! Validation of aggregates that regroup their input (`group_by`, key
//! functions) and the internal topic derived for them.

use std::time::Duration;

use kfn_sdk::{AggCtx, Ctx, Event, FnError, Registry};

use super::*;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Order {
    order_id: String,
    store: i64,
    lines: Vec<String>,
}
impl Event for Order {
    const NAME: &'static str = "t.Order";
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Total {
    n: i64,
}
impl Event for Total {
    const NAME: &'static str = "t.Total";
}

fn count(_: &AggCtx, state: Option<Total>, _: Order) -> Result<Total, FnError> {
    Ok(Total { n: state.map_or(0, |t| t.n) + 1 })
}

fn lines(_: &Ctx, order: &Order) -> Result<Vec<String>, FnError> {
    Ok(order.lines.clone())
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.aggregate("count", count).aggregate_by("count_lines", lines, count);
    registry
}

/// Topics `orders` (6 partitions), `more_orders` (2), `totals` (compacted, 3 partitions), then `rest`.
fn load(rest: &str) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let order = r#"{"type": "record", "name": "Order", "namespace": "t", "fields": [
        {"name": "order_id", "type": "string"}, {"name": "store", "type": "long"},
        {"name": "lines", "type": {"type": "array", "items": "string"}}]}"#;
    let total = r#"{"type": "record", "name": "Total", "namespace": "t", "fields": [{"name": "n", "type": "long"}]}"#;
    std::fs::write(dir.path().join("order.avsc"), order).expect("write schema");
    std::fs::write(dir.path().join("total.avsc"), total).expect("write schema");
    let text = format!(
        "[topic_defaults]\nreplication = 3\n\n[topics]\n\
         orders = {{ partitions = 6, schema = \"order.avsc\" }}\n\
         more_orders = {{ partitions = 2, schema = \"order.avsc\" }}\n\
         totals = {{ partitions = 3, cleanup_policy = \"compact\", schema = \"total.avsc\" }}\n\n{rest}"
    );
    let file = dir.path().join("functions.toml");
    std::fs::write(&file, text).expect("write functions.toml");
    let result = Config::load_file_only(&file, &registry());
    (dir, result)
}

fn aggregate(fold: &str, extra: &str) -> String {
    format!(
        "[functions.per_store]\naggregate = \"{fold}\"\ninput = \"orders\"\noutputs = {{ table = \"totals\" }}\n\
         guarantee = \"exactly_once\"\n{extra}"
    )
}

fn errors_of(loaded: (tempfile::TempDir, Result<Config, ConfigErrors>)) -> Vec<(String, String)> {
    let err = loaded.1.expect_err("the broken config was accepted");
    err.errors().iter().map(|e| (e.field.clone(), e.message.clone())).collect()
}

fn has(errors: &[(String, String)], field: &str, needle: &str) -> bool {
    errors.iter().any(|(f, m)| f == field && m.contains(needle))
}

#[test]
fn config_group_by_derives_the_internal_topic_like_the_table() {
    // The input has 6 partitions, the table 3: fine, the fold reads the internal topic.
    let (_dir, result) = load(&aggregate("count", "group_by = \"store\"\n"));
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let spec = &config.functions["per_store"];
    let repartition = spec.repartition().expect("a repartition");
    assert_eq!(
        repartition,
        &Repartition { topic: "per_store.repartition".into(), group_by: GroupBy::Field("store".into()) }
    );
    let t = &config.topics["per_store.repartition"];
    assert_eq!((t.partitions, t.replication, t.cleanup_policy), (3, 3, CleanupPolicy::Delete));
    assert_eq!(t.retention, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(t.event.as_deref(), Some("t.Order"));
    assert_eq!(t.schema, config.topics["orders"].schema);
    assert!(config.topics.contains_key("per_store.dlq"), "the stages share the aggregate's dead-letter topic");
    assert_eq!(spec.inputs(), ["orders"], "the function still reads what the file says");
    assert_eq!(spec.fold_stage().inputs(), ["per_store.repartition"]);
    let stages: Vec<_> = spec.stages().iter().map(FunctionSpec::group_id).collect();
    assert_eq!(stages, ["kfn.per_store.repartition", "kfn.per_store"]);
}

#[test]
fn config_a_key_function_repartitions_several_inputs_and_a_declared_topic_wins() {
    let rest = format!(
        "{}\n[topics.\"per_store.repartition\"]\npartitions = 3\nretention = \"1d\"\nschema = \"order.avsc\"\n",
        aggregate("count_lines", "").replace("input = \"orders\"", "inputs = [\"orders\", \"more_orders\"]")
    );
    let (_dir, result) = load(&rest);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let spec = &config.functions["per_store"];
    assert_eq!(spec.repartition().map(|r| &r.group_by), Some(&GroupBy::KeyFunction));
    assert_eq!(spec.rekey_stage().unwrap().inputs(), ["orders", "more_orders"]);
    assert_eq!(config.topics["per_store.repartition"].retention, Some(Duration::from_secs(86_400)));
}

#[test]
fn config_group_by_errors_name_the_field() {
    let errors = errors_of(load(&aggregate("count", "group_by = \"customer\"\n")));
    assert!(
        has(&errors, "functions.per_store.group_by", "expected a field of t.Order, the events of \"orders\", found \"customer\" (its fields: order_id, store, lines)"),
        "{errors:?}"
    );
    let errors = errors_of(load(&aggregate("count", "group_by = \"lines\"\n")));
    assert!(
        has(
            &errors,
            "functions.per_store.group_by",
            "expected a string, long or int field of t.Order to group by, but \"lines\" is of type Array"
        ),
        "{errors:?}"
    );
    let errors = errors_of(load(&aggregate("count_lines", "group_by = \"store\"\n")));
    assert!(has(&errors, "functions.per_store.group_by", "has a key function"), "{errors:?}");

    // Several inputs need a repartition; group_by belongs to aggregates.
    let several = aggregate("count", "").replace("input = \"orders\"", "inputs = [\"orders\", \"more_orders\"]");
    let errors = errors_of(load(&several));
    assert!(has(&errors, "functions.per_store.inputs", "need `group_by` or a key function"), "{errors:?}");
    let errors = errors_of(load(
        "[functions.plain]\nhandler = \"count\"\ninput = \"orders\"\noutputs = { out = \"totals\" }\ngroup_by = \"store\"\n",
    ));
    assert!(has(&errors, "functions.plain.group_by", "only an aggregate"), "{errors:?}");

    // Without a repartition the table must still match its input, and a declared internal topic the table.
    let errors = errors_of(load(&aggregate("count", "")));
    assert!(has(&errors, "functions.per_store.outputs.table", "as many partitions as the input"), "{errors:?}");
    let declared = format!(
        "{}\n[topics.\"per_store.repartition\"]\npartitions = 6\n",
        aggregate("count", "group_by = \"order_id\"\n")
    );
    let errors = errors_of(load(&declared));
    assert!(
        has(&errors, "topics.\"per_store.repartition\".partitions", "expected 3 partitions like the table"),
        "{errors:?}"
    );
    assert!(
        has(&errors, "topics.\"per_store.repartition\".schema", "expected the schema of the input (t.Order)"),
        "{errors:?}"
    );
}
