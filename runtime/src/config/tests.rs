//! Validation of topic defaults, conventional dead-letter topics and several
//! inputs, on small files with a registry of their own.

use std::time::Duration;

use kfn_sdk::{Ctx, Emit, Event, FnError, Registry};

use super::*;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Created {
    id: String,
}
impl Event for Created {
    const NAME: &'static str = "t.Created";
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Shipped {
    id: String,
}
impl Event for Shipped {
    const NAME: &'static str = "t.Shipped";
}

async fn created(_: Ctx, e: Created) -> Result<Emit, FnError> {
    Ok(Emit::one("out", e.id.clone(), e))
}

async fn shipped(_: Ctx, e: Shipped) -> Result<Emit, FnError> {
    Ok(Emit::one("out", e.id.clone(), e))
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.handler("track", created).handler("track", shipped).handler("only_created", created);
    registry.http("accept", |_| async { kfn_sdk::HttpReply::json(202, "{}") });
    registry
}

/// Topics `created` (t.Created), `shipped` (t.Shipped) and `out`, then `rest`.
fn load(defaults: &str, rest: &str) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["Created", "Shipped"] {
        let schema = format!(
            r#"{{"type": "record", "name": "{name}", "namespace": "t", "fields": [{{"name": "id", "type": "string"}}]}}"#
        );
        std::fs::write(dir.path().join(format!("{name}.avsc")), schema).expect("write schema");
    }
    let text = format!(
        "{defaults}\n[topics]\n\
         created = {{ schema = \"Created.avsc\" }}\n\
         shipped = {{ partitions = 2, retention = \"30d\", schema = \"Shipped.avsc\" }}\n\
         out = {{ cleanup_policy = \"compact\", schema = \"Created.avsc\" }}\n\n{rest}"
    );
    let file = dir.path().join("functions.toml");
    std::fs::write(&file, text).expect("write functions.toml");
    let result = Config::load_file_only(&file, &registry());
    (dir, result)
}

const DEFAULTS: &str = "[topic_defaults]\npartitions = 4\nreplication = 3\nretention = \"7d\"\n";
const TRACK: &str =
    "[functions.track]\nhandler = \"track\"\ninputs = [\"created\", \"shipped\"]\noutputs = { out = \"out\" }\n";

/// The (field, message) of each error of a config that must not load.
fn errors_of(loaded: (tempfile::TempDir, Result<Config, ConfigErrors>)) -> Vec<(String, String)> {
    let err = loaded.1.expect_err("the broken config was accepted");
    err.errors().iter().map(|e| (e.field.clone(), e.message.clone())).collect()
}

fn has(errors: &[(String, String)], field: &str, needle: &str) -> bool {
    errors.iter().any(|(f, m)| f == field && m.contains(needle))
}

#[test]
fn config_topic_defaults_fill_in_and_explicit_values_win() {
    let (_dir, result) = load(DEFAULTS, TRACK);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let days = |d: u64| Some(Duration::from_secs(d * 86_400));
    let t = &config.topics["created"];
    assert_eq!((t.partitions, t.replication, t.retention), (4, 3, days(7)));
    assert_eq!(t.event.as_deref(), Some("t.Created"));
    let t = &config.topics["shipped"];
    assert_eq!((t.partitions, t.replication, t.retention), (2, 3, days(30)));
    // A table does not inherit the default retention.
    let t = &config.topics["out"];
    assert_eq!((t.cleanup_policy, t.retention), (CleanupPolicy::Compact, None));
}

#[test]
fn config_topic_default_errors_name_topic_defaults() {
    let (dir, result) = load("[topic_defaults]\npartitions = 0\nreplication = 3\ncleanup_policy = \"shred\"\n", TRACK);
    let err = result.expect_err("accepted");
    let file = dir.path().join("functions.toml").display().to_string();
    assert!(err.errors().iter().all(|e| e.source == file), "{err}");
    let errors: Vec<_> = err.errors().iter().map(|e| (e.field.clone(), e.message.clone())).collect();
    assert!(has(&errors, "topic_defaults.partitions", "from 1 to 100000"), "{errors:?}");
    assert!(has(&errors, "topic_defaults.cleanup_policy", "\"delete\", \"compact\""), "{errors:?}");
    // Reported once, not for each topic that inherits the value.
    assert_eq!(errors.len(), 2, "{errors:?}");

    let errors = errors_of(load("[topic_defaults]\nreplication = 3\n", TRACK));
    assert!(has(&errors, "topics.\"created\".partitions", "here or in [topic_defaults]"), "{errors:?}");
    assert!(!errors.iter().any(|(f, _)| f.starts_with("topics.\"shipped\"")), "{errors:?}");
}

#[test]
fn config_dead_letter_topics_are_derived_and_overridable() {
    let (_dir, result) = load(DEFAULTS, TRACK);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.functions["track"].dead_letter.as_deref(), Some("track.dlq"));
    let dlq = &config.topics["track.dlq"];
    assert_eq!((dlq.partitions, dlq.replication, dlq.cleanup_policy), (1, 3, CleanupPolicy::Delete));
    assert_eq!(dlq.retention, Some(Duration::from_secs(30 * 86_400)));

    // Declared: its settings win, [topic_defaults] fills the rest.
    let (_dir, result) = load(DEFAULTS, &format!("{TRACK}\n[topics.\"track.dlq\"]\npartitions = 2\n"));
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let dlq = &config.topics["track.dlq"];
    assert_eq!((dlq.partitions, dlq.retention), (2, Some(Duration::from_secs(7 * 86_400))));

    // A named dead_letter must be declared; it is not derived.
    let named = TRACK.replace("outputs =", "dead_letter = \"letters\"\noutputs =");
    let errors = errors_of(load(DEFAULTS, &named));
    assert!(has(&errors, "functions.track.dead_letter", "undeclared topic \"letters\""), "{errors:?}");
}

#[test]
fn config_an_http_function_gets_an_idempotency_topic_that_expires_keys() {
    let api = "[functions.api]\nhandler = \"accept\"\ntrigger = { http = { method = \"POST\", path = \"/t\" } }\noutputs = { out = \"out\" }\n";
    let (_dir, result) = load(DEFAULTS, api);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.functions["api"].idempotency_topic().as_deref(), Some("api.idempotency"));
    let keys = &config.topics["api.idempotency"];
    assert_eq!((keys.partitions, keys.replication, keys.cleanup_policy), (3, 3, CleanupPolicy::CompactDelete));
    assert_eq!(keys.retention, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(keys.broker_configs()["cleanup.policy"], "compact,delete");
    // A topic function has none.
    let (_dir, result) = load(DEFAULTS, TRACK);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.functions["track"].idempotency_topic(), None);
    assert!(!config.topics.keys().any(|t| t.ends_with(".idempotency")));

    // Declared: its settings win (here a week of memory).
    let declared =
        format!("{api}\n[topics.\"api.idempotency\"]\ncleanup_policy = \"compact,delete\"\nretention = \"7d\"\n");
    let (_dir, result) = load(DEFAULTS, &declared);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let keys = &config.topics["api.idempotency"];
    assert_eq!((keys.partitions, keys.retention), (4, Some(Duration::from_secs(7 * 86_400))));
}

#[test]
fn config_each_input_needs_a_handler_for_its_event_type() {
    let (_dir, result) = load(DEFAULTS, TRACK);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.functions["track"].inputs(), ["created", "shipped"]);
    assert_eq!(config.functions["track"].input_field(1), "functions.track.inputs[1]");

    let only = TRACK.replace("handler = \"track\"", "handler = \"only_created\"");
    let errors = errors_of(load(DEFAULTS, &only));
    assert!(has(&errors, "functions.track.inputs[1]", "\"shipped\" carries t.Shipped"), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");

    let both = TRACK.replace("inputs = [", "input = \"created\"\ninputs = [");
    let errors = errors_of(load(DEFAULTS, &both));
    assert!(has(&errors, "functions.track", "not both"), "{errors:?}");

    let twice = TRACK.replace("[\"created\", \"shipped\"]", "[\"created\", \"shipped\", \"created\"]");
    let errors = errors_of(load(DEFAULTS, &twice));
    assert!(has(&errors, "functions.track.inputs[2]", "functions.track.inputs[0]"), "{errors:?}");
}

#[test]
fn config_transactional_producer_defaults_to_auto_and_names_its_choices() {
    let (_dir, result) = load(DEFAULTS, TRACK);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.runtime.transactional_producer, TransactionalProducer::Auto);
    let (_dir, result) = load(&format!("[runtime]\ntransactional_producer = \"per_partition\"\n{DEFAULTS}"), TRACK);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.runtime.transactional_producer, TransactionalProducer::PerPartition);
    let errors = errors_of(load(&format!("[runtime]\ntransactional_producer = \"v2\"\n{DEFAULTS}"), TRACK));
    assert!(has(&errors, "runtime.transactional_producer", "\"per_member\""), "{errors:?}");
}

#[test]
fn config_group_protocol_defaults_to_auto_and_names_its_choices() {
    let (_dir, result) = load(DEFAULTS, TRACK);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.runtime.group_protocol, GroupProtocol::Auto);
    for (text, protocol) in [("consumer", GroupProtocol::Consumer), ("classic", GroupProtocol::Classic)] {
        let (_dir, result) = load(&format!("[runtime]\ngroup_protocol = \"{text}\"\n{DEFAULTS}"), TRACK);
        let config = result.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.runtime.group_protocol, protocol);
    }
    let errors = errors_of(load(&format!("[runtime]\ngroup_protocol = \"cooperative\"\n{DEFAULTS}"), TRACK));
    assert!(has(&errors, "runtime.group_protocol", "\"consumer\""), "{errors:?}");
}

#[test]
fn config_registry_access_reads_the_password_from_the_environment_and_the_ca_beside_the_file() {
    // PATH is set wherever tests run; setting a variable would race other tests.
    let runtime = "[runtime]\nschema_registry = \"https://registry.internal:8081\"\n\
                   schema_registry_auth = { username = \"orders\", password_env = \"PATH\" }\n\
                   schema_registry_tls = { ca = \"ca.pem\" }\n";
    // The first load fails for want of the CA; it is then written beside functions.toml.
    let (dir, first) = load(&format!("{runtime}{DEFAULTS}"), TRACK);
    assert!(first.is_err(), "the CA file does not exist yet");
    std::fs::write(dir.path().join("ca.pem"), "read when the client is built").expect("write ca");
    let result = Config::load_file_only(&dir.path().join("functions.toml"), &registry());
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    let access = &config.runtime.schema_registry_access;
    let auth = access.auth.as_ref().expect("auth");
    assert_eq!((auth.username.as_str(), auth.password.clone()), ("orders", std::env::var("PATH").unwrap()));
    assert_eq!(access.ca_file.as_deref(), Some(dir.path().join("ca.pem").as_path()));
    assert!(!format!("{access:?}").contains(&auth.password), "the password is not printed");
}

#[test]
fn config_registry_access_errors_name_their_field() {
    let unset = "[runtime]\nschema_registry = \"https://r:8081\"\n\
                 schema_registry_auth = { username = \"a:b\", password_env = \"KFN_TEST_SURELY_UNSET_PASSWORD\" }\n\
                 schema_registry_tls = { ca = \"missing.pem\" }\n";
    let errors = errors_of(load(&format!("{unset}{DEFAULTS}"), TRACK));
    assert!(has(&errors, "runtime.schema_registry_auth.password_env", "KFN_TEST_SURELY_UNSET_PASSWORD"), "{errors:?}");
    assert!(has(&errors, "runtime.schema_registry_auth.username", "without ':'"), "{errors:?}");
    assert!(has(&errors, "runtime.schema_registry_tls.ca", "missing.pem does not exist"), "{errors:?}");

    let plain = "[runtime]\nschema_registry = \"http://r:8081\"\nschema_registry_tls = { ca = \"ca.pem\" }\n";
    let errors = errors_of(load(&format!("{plain}{DEFAULTS}"), TRACK));
    assert!(has(&errors, "runtime.schema_registry_tls.ca", "not an https:// URL"), "{errors:?}");

    let scheme = "[runtime]\nschema_registry = \"registry:8081\"\n";
    let errors = errors_of(load(&format!("{scheme}{DEFAULTS}"), TRACK));
    assert!(has(&errors, "runtime.schema_registry", "http:// or https://"), "{errors:?}");

    let typo = "[runtime.schema_registry_auth]\nuser = \"orders\"\npassword_env = \"X\"\n";
    let errors = errors_of(load(&format!("{typo}{DEFAULTS}"), TRACK));
    assert!(errors.iter().any(|(f, _)| f.starts_with("runtime.schema_registry_auth")), "{errors:?}");
}

#[test]
fn config_a_json_topic_is_read_and_written() {
    let json = "[topics.changes]\nformat = \"json\"\nschema = \"Created.avsc\"\n\
                [functions.read]\nhandler = \"only_created\"\ninput = \"changes\"\noutputs = { out = \"out\" }\n";
    let (_dir, result) = load(DEFAULTS, json);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.topics["changes"].format, TopicFormat::Json);
    assert_eq!(config.topics["changes"].event.as_deref(), Some("t.Created"), "its schema names its event type");
    assert_eq!(config.topics["created"].format, TopicFormat::Avro, "Avro unless a topic says otherwise");

    // Rows for Connect's sinks: a function may write a JSON topic (rows with Connect's schema).
    let writes_json = "[topics.changes]\nformat = \"json\"\nschema = \"Created.avsc\"\n\
                       [functions.write]\nhandler = \"only_created\"\ninput = \"created\"\noutputs = { out = \"changes\" }\n";
    let (_dir, result) = load(DEFAULTS, writes_json);
    assert!(result.is_ok(), "{:?}", result.err().map(|e| e.to_string()));
    let errors = errors_of(load(DEFAULTS, "[topics.x]\nformat = \"protobuf\"\n"));
    assert!(has(&errors, "topics.\"x\".format", "\"avro\", \"json\""), "{errors:?}");
}

#[test]
fn config_a_table_is_a_declared_compacted_topic_of_a_topic_handler() {
    let good = "[functions.read]\nhandler = \"only_created\"\ninput = \"created\"\n\
                tables = { catalog = \"out\" }\n\
                [local]\nseed = { out = \"seed.sql\" }\n";
    let (_dir, result) = load(DEFAULTS, good);
    let config = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.functions["read"].tables["catalog"], "out");
    assert_eq!(config.local.seed["out"], std::path::PathBuf::from("seed.sql"));

    let bad = "[functions.read]\nhandler = \"only_created\"\ninput = \"created\"\n\
               tables = { catalog = \"shipped\", gone = \"nowhere\" }\n";
    let errors = errors_of(load(DEFAULTS, bad));
    assert!(has(&errors, "functions.read.tables.catalog", "expected a compacted topic"), "{errors:?}");
    assert!(has(&errors, "functions.read.tables.gone", "undeclared topic \"nowhere\""), "{errors:?}");
}

#[test]
fn config_load_str_validates_text_as_the_named_file() {
    let (dir, from_file) = load("[topic_defaults]\npartitions = 3\nreplication = 1\n", "");
    let file = dir.path().join("functions.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let from_text = Config::load_str(&file, &text, &registry()).expect("the same text loads");
    let from_file = from_file.expect("the file loads");
    assert_eq!(from_text.topics.keys().collect::<Vec<_>>(), from_file.topics.keys().collect::<Vec<_>>());
    // A value cut short is a syntax error naming the file, not a panic.
    let cut = &text[..text.find("retention").unwrap() + 15];
    let errors = Config::load_str(&file, cut, &registry()).expect_err("a truncated file is refused");
    assert!(errors.errors().iter().all(|e| e.source == file.display().to_string()), "{errors}");
    // A wrong value names its field.
    let errors = Config::load_str(&file, "[runtime]\nbrokers = 5\n", &registry()).expect_err("a number is no list");
    assert!(errors.errors().iter().any(|e| e.field == "runtime.brokers"), "{errors}");
}

#[test]
fn config_an_empty_key_is_named_as_one() {
    // Found by the config fuzz target: `"" = ""` gave an error naming no field.
    let file = std::path::Path::new("functions.toml");
    let errors = Config::load_str(file, "\"\" = \"\"", &registry()).expect_err("an unknown (empty) key");
    assert!(errors.errors().iter().any(|e| e.field == "\"\"" && e.message.contains("unknown field")), "{errors}");
    let errors = Config::load_str(file, "[runtime]\n\"\" = 1\n", &registry()).expect_err("an unknown (empty) key");
    assert!(errors.errors().iter().all(|e| !e.field.is_empty()), "{errors}");
}
