//! `kfn check`: the shipped functions.toml is valid, and broken variants fail
//! with the file, the field path and what was expected.

use std::path::{Path, PathBuf};

use std::time::Duration;

use kfn::config::{CleanupPolicy, Config, ConfigErrors};

fn registry() -> kfn_sdk::Registry {
    kfn_functions::registry()
}

fn shipped() -> String {
    std::fs::read_to_string(kfn_tests::workspace_root().join("functions.toml")).expect("functions.toml")
}

/// Writes `text` as functions.toml of a copy of the shipped project, and loads it.
fn load(text: &str) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = kfn_tests::shipped_project();
    let file = dir.path().join("functions.toml");
    std::fs::write(&file, text).expect("write");
    let result = Config::load_file_only(&file, &registry());
    (dir, result)
}

/// Replaces `from` (which must occur) by `to` in the shipped config.
fn variant(from: &str, to: &str) -> String {
    let text = shipped();
    assert!(text.contains(from), "the shipped functions.toml no longer contains {from:?}");
    text.replacen(from, to, 1)
}

/// Asserts that loading `text` fails with an error on `field` whose message contains `expected`.
fn assert_error(text: &str, field: &str, expected: &str) {
    let (dir, result) = load(text);
    let err = result.expect_err("the broken config was accepted");
    let file: PathBuf = dir.path().join("functions.toml");
    let found = err.errors().iter().find(|e| e.field == field);
    let Some(found) = found else {
        panic!("no error on field {field}; errors were:\n{err}");
    };
    assert_eq!(Path::new(&found.source), file, "the error names the file");
    assert!(
        found.message.contains(expected),
        "error on {field} says {:?}, expected it to mention {expected:?}",
        found.message
    );
    let shown = err.to_string();
    assert!(shown.contains(&file.display().to_string()) && shown.contains(field), "{shown}");
}

#[test]
fn a_truncated_file_is_one_error_naming_line_column_and_text() {
    let text = shipped();
    // Cut mid-way through a table header, as a partial write or a bad merge leaves it.
    let cut = text.find("[functions.").expect("a function table") + "[functions.".len() + 3;
    let (dir, result) = load(&text[..cut]);
    let err = result.expect_err("a truncated file was accepted");
    assert_eq!(err.errors().len(), 1, "{err}");
    let line = err.errors()[0].to_string();
    let number = text[..cut].lines().count();
    let file = dir.path().join("functions.toml").display().to_string();
    assert!(line.starts_with(&format!("{file}: not valid TOML at line {number}, column ")), "{line}");
    assert!(line.contains(&format!("(there: `{}`)", text[..cut].lines().last().expect("a line").trim())), "{line}");
    assert!(!line.contains('\n'), "{line}");
}

#[test]
fn the_shipped_config_is_valid() {
    let (_dir, result) = load(&shipped());
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.topics["orders.created"].partitions, 6);
    assert_eq!(config.topics["orders.created"].replication, 3);
    assert_eq!(config.topics["orders.rejected"].retention, Some(std::time::Duration::from_secs(30 * 86_400)));
    assert_eq!(config.local.replication, Some(1));
    assert!(config.functions.contains_key("validation"));
}

#[test]
fn topic_defaults_fill_what_a_topic_leaves_out() {
    let (_dir, result) = load(&shipped());
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let days = |d: u64| Some(Duration::from_secs(d * 86_400));
    // From [topic_defaults]: 6 partitions, replication 3, 7 days.
    let created = &config.topics["orders.created"];
    assert_eq!((created.partitions, created.replication, created.retention), (6, 3, days(7)));
    // An explicit value wins.
    let rejected = &config.topics["orders.rejected"];
    assert_eq!((rejected.partitions, rejected.replication, rejected.retention), (3, 3, days(30)));
    // A table keeps each key's last record: no default retention.
    let status = &config.topics["orders.status"];
    assert_eq!((status.cleanup_policy, status.retention), (CleanupPolicy::Compact, None));
}

#[test]
fn a_topic_without_partitions_anywhere_is_an_error() {
    let text = variant("[topic_defaults]\npartitions = 6\n", "[topic_defaults]\n");
    assert_error(&text, "topics.\"orders.created\".partitions", "here or in [topic_defaults]");
}

#[test]
fn a_bad_default_is_reported_once_under_topic_defaults() {
    let text = variant("[topic_defaults]\npartitions = 6", "[topic_defaults]\npartitions = 0");
    let (_dir, result) = load(&text);
    let err = result.expect_err("accepted");
    let fields: Vec<_> = err.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["topic_defaults.partitions"], "not again for each topic that inherits it");
    assert_error(&text, "topic_defaults.partitions", "from 1 to 100000");
    let text = variant("[topic_defaults]\npartitions = 6", "[topic_defaults]\npartitions = 6\nsegments = 2");
    assert_error(&text, "topic_defaults.segments", "unknown field");
}

#[test]
fn a_topic_function_gets_a_dead_letter_topic_by_convention() {
    let (_dir, result) = load(&shipped());
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    for (name, function) in &config.functions {
        let expected = (!function.inputs().is_empty()).then(|| format!("{name}.dlq"));
        assert_eq!(function.dead_letter, expected, "{name}");
    }
    // Materialized among the topics, so whatever creates, describes or grants topics sees it.
    let dlq = &config.topics["track.dlq"];
    assert_eq!((dlq.partitions, dlq.replication), (1, 3));
    assert_eq!(dlq.retention, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(dlq.cleanup_policy, CleanupPolicy::Delete);
    assert!(dlq.schema.is_none());

    // Declaring the topic overrides the convention's settings.
    let text = variant("[topics]\n", "[topics]\n\"track.dlq\" = { partitions = 2, retention = \"90d\" }\n");
    let (_dir, result) = load(&text);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let dlq = &config.topics["track.dlq"];
    assert_eq!((dlq.partitions, dlq.retention), (2, Some(Duration::from_secs(90 * 86_400))));
    assert_eq!(config.functions["track"].dead_letter.as_deref(), Some("track.dlq"));

    // An explicit dead_letter must still be declared.
    let text = variant(
        "guarantee = \"exactly_once\"\nordering = \"key\"",
        "guarantee = \"exactly_once\"\nordering = \"key\"\ndead_letter = \"valdation.dlq\"",
    );
    assert_error(&text, "functions.validation.dead_letter", "undeclared topic \"valdation.dlq\"");
}

#[test]
fn a_function_reads_several_topics_each_with_the_handler_of_its_event() {
    let (_dir, result) = load(&shipped());
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.functions["track"].inputs().len(), 7);
    assert_eq!(config.functions["notify"].inputs()[3], "shipments.dispatched");

    // A topic whose event type has no handler under the function's handler name.
    let text = variant("inputs = [\"orders.rejected\"", "inputs = [\"orders.validated\"");
    assert_error(
        &text,
        "functions.notify.inputs[0]",
        "but \"orders.validated\" carries com.tutorial.orders.OrderValidated",
    );
    let text = variant("inputs = [\"orders.rejected\"", "inputs = [\"orders.rejectd\"");
    assert_error(&text, "functions.notify.inputs[0]", "undeclared topic \"orders.rejectd\"");
    let text = variant(
        "inputs = [\"orders.rejected\", \"payments.failed\"",
        "inputs = [\"orders.rejected\", \"orders.rejected\"",
    );
    assert_error(&text, "functions.notify.inputs[1]", "expected each topic once");
    let text = variant("inputs = [\"orders.rejected\"", "input = \"orders.rejected\"\ninputs = [\"orders.rejected\"");
    assert_error(&text, "functions.notify", "either `input` (one topic) or `inputs` (several)");
    let text = variant(
        "inputs = [\"orders.rejected\", \"payments.failed\", \"payments.processed\", \"shipments.dispatched\"]",
        "inputs = []",
    );
    assert_error(&text, "functions.notify.inputs", "at least one topic");
    // An aggregate folds one input into a table partitioned like it.
    let text = variant("input = \"orders.status-changes\"", "inputs = [\"orders.status-changes\", \"orders.created\"]");
    assert_error(&text, "functions.tracking.inputs", "expected one input");
}

#[test]
fn local_overrides_are_explicit() {
    let (_dir, result) = load(&shipped());
    let mut config = result.expect("valid");
    let changes = config.apply_local_overrides();
    assert_eq!(changes.len(), config.topics.len(), "every topic of replication 3 is reported: {changes:?}");
    assert!(config.topics.values().all(|t| t.replication == 1));
}

#[test]
fn a_typo_in_a_field_name_is_an_error() {
    let text =
        variant("retry = { max_attempts = 5, backoff = \"100ms\"", "retry = { max_atempts = 5, backoff = \"100ms\"");
    assert_error(&text, "functions.validation.retry.max_atempts", "unknown field");
}

#[test]
fn an_unknown_section_is_an_error() {
    let text = variant("[runtime.producer]", "[runtime.produser]");
    assert_error(&text, "runtime.produser", "unknown field");
}

#[test]
fn an_undeclared_input_topic_is_an_error() {
    let text = variant("input = \"orders.created\"", "input = \"orders.creatd\"");
    assert_error(&text, "functions.validation.input", "undeclared topic \"orders.creatd\"");
}

#[test]
fn an_undeclared_output_topic_is_an_error() {
    let text = variant("validated = \"orders.validated\"", "validated = \"orders.valid\"");
    assert_error(&text, "functions.validation.outputs.validated", "undeclared topic");
}

#[test]
fn an_unregistered_handler_is_an_error() {
    let text = variant("handler = \"validate_order\"", "handler = \"validate_orders\"");
    assert_error(&text, "functions.validation.handler", "registered in functions/");
}

#[test]
fn two_http_triggers_on_one_route_are_an_error() {
    let text = format!(
        "{}\n[functions.order_api_copy]\nhandler = \"create_order\"\ntrigger = {{ http = {{ method = \"POST\", path = \"/orders\" }} }}\noutputs = {{ created = \"orders.created\" }}\n",
        shipped()
    );
    assert_error(&text, "functions.order_api_copy.trigger.http", "also the route of function order_api");
}

#[test]
fn zero_attempts_is_an_error() {
    let text = variant("retry = { max_attempts = 5,", "retry = { max_attempts = 0,");
    assert_error(&text, "functions.validation.retry.max_attempts", "from 1 to 1000");
}

#[test]
fn a_max_backoff_below_the_backoff_is_an_error() {
    let text = variant("max_backoff = \"10s\"", "max_backoff = \"10ms\"");
    assert_error(&text, "functions.validation.retry.max_backoff", "at least the initial backoff");
}

#[test]
fn a_multiplier_below_one_is_an_error() {
    let text = variant("max_backoff = \"10s\", multiplier = 2.0", "max_backoff = \"10s\", multiplier = 0.5");
    assert_error(&text, "functions.validation.retry.multiplier", "from 1.0");
}

#[test]
fn a_retry_topic_must_be_declared_and_the_function_s_own() {
    let text = variant("topic = \"payment.retry\"", "topic = \"payment.retries\"");
    assert_error(&text, "functions.payment.retry.topic", "undeclared topic \"payment.retries\"");
    let text = variant("topic = \"payment.retry\"", "topic = \"payment.dlq\"");
    assert_error(&text, "functions.payment.retry.topic", "also this function's input, output or dead_letter");
    let text = variant("topic = \"payment.retry\"", "topic = \"orders.created\"");
    assert_error(&text, "functions.payment.retry.topic", "also reads \"orders.created\"");
}

#[test]
fn a_retry_topic_that_would_lose_waiting_records_is_an_error() {
    let text = variant(
        "\"payment.retry\" = { partitions = 3, retention = \"1d\" }",
        "\"payment.retry\" = { partitions = 3, retention = \"1s\" }",
    );
    assert_error(&text, "functions.payment.retry.topic", "at least twice max_backoff");
    let text = variant(
        "\"payment.retry\" = { partitions = 3, retention = \"1d\" }",
        "\"payment.retry\" = { partitions = 3, retention = \"1d\", cleanup_policy = \"compact\" }",
    );
    assert_error(&text, "functions.payment.retry.topic", "expected a delete topic");
}

#[test]
fn a_fetch_wait_out_of_range_is_an_error() {
    let text = variant("slow_handler = \"2s\"", "slow_handler = \"2s\"\nfetch_max_wait = \"1ms\"");
    assert_error(&text, "runtime.fetch_max_wait", "from 10ms to 30s");
}

#[test]
fn a_bad_duration_is_an_error() {
    let text = variant("retention = \"7d\"", "retention = \"7 dayz\"");
    assert_error(&text, "topic_defaults.retention", "a duration such as");
    let text = variant("retention = \"30d\", key = \"order_id\"", "retention = \"30 dayz\", key = \"order_id\"");
    assert_error(&text, "topics.\"orders.rejected\".retention", "a duration such as");
}

#[test]
fn zero_partitions_is_an_error() {
    let text = variant("\"orders.rejected\" = { partitions = 3", "\"orders.rejected\" = { partitions = 0");
    assert_error(&text, "topics.\"orders.rejected\".partitions", "from 1 to 100000");
}

#[test]
fn an_unknown_guarantee_is_an_error() {
    let text = variant("guarantee = \"exactly_once\"", "guarantee = \"exactly_twice\"");
    assert_error(&text, "functions.validation.guarantee", "\"at_least_once\", \"exactly_once\"");
}

#[test]
fn a_missing_schema_file_is_an_error() {
    let text = variant("schema = \"schemas/order_created.avsc\"", "schema = \"schemas/order_create.avsc\"");
    assert_error(&text, "topics.\"orders.created\".schema", "order_create.avsc");
}

#[test]
fn an_invalid_schema_is_an_error() {
    let text = variant("schema = \"schemas/order_created.avsc\"", "schema = \"schemas/broken.avsc\"");
    let (dir, _) = load(&text);
    std::fs::write(
        dir.path().join("schemas/broken.avsc"),
        r#"{"type": "record", "name": "X", "fields": [{"name": "a"}]}"#,
    )
    .expect("write");
    let err = Config::load_file_only(&dir.path().join("functions.toml"), &registry()).expect_err("accepted");
    let e = err.errors().iter().find(|e| e.field == "topics.\"orders.created\".schema").expect("schema error");
    assert!(e.message.contains("valid Avro schema"), "{}", e.message);
}

#[test]
fn a_handler_reading_the_wrong_event_type_is_an_error() {
    let text = variant("input = \"orders.created\"", "input = \"orders.validated\"");
    assert_error(&text, "functions.validation.input", "carries com.tutorial.orders.OrderValidated");
}

#[test]
fn sasl_without_credentials_is_an_error() {
    let text = variant("[local]", "[security]\nprotocol = \"SASL_SSL\"\n\n[local]");
    assert_error(&text, "security.sasl", "mechanism, username, password_env");
}

#[test]
fn a_password_in_the_file_is_an_error() {
    let text = variant(
        "[local]",
        "[security]\nprotocol = \"SASL_PLAINTEXT\"\nsasl = { mechanism = \"PLAIN\", username = \"u\", password = \"hunter2\" }\n\n[local]",
    );
    assert_error(&text, "security.sasl.password", "unknown field");
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let text =
        variant("partitions = 3", "partitions = 0").replacen("handler = \"validate_order\"", "handler = \"nope\"", 1);
    let (_dir, result) = load(&text);
    let err = result.expect_err("accepted");
    let fields: Vec<_> = err.errors().iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"topics.\"orders.rejected\".partitions"), "{fields:?}");
    assert!(fields.contains(&"functions.validation.handler"), "{fields:?}");
}

/// The CLI itself: `kfn check` exits 0 on the shipped file and 1 on a broken one, printing the errors.
#[test]
fn the_check_command_exits_with_the_verdict() {
    let kfn = env!("CARGO_BIN_EXE_kfn-test-replica");
    let shipped = kfn_tests::workspace_root().join("functions.toml");
    let ok = std::process::Command::new(kfn).args(["check", "--config"]).arg(&shipped).output().expect("run kfn check");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(": ok ("));

    let text = variant("partitions = 6", "partitions = 0").replacen(
        "guarantee = \"exactly_once\"",
        "guarantee = \"twice\"",
        1,
    );
    let (dir, _) = load(&text);
    let broken = dir.path().join("functions.toml");
    let out = std::process::Command::new(kfn).args(["check", "--config"]).arg(&broken).output().expect("run kfn check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 error(s)"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: topic_defaults.partitions: expected an integer from 1 to 100000, found 0",
            broken.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("functions.validation.guarantee: expected one of"), "{stderr}");
}
