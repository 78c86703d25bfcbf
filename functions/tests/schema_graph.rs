//! The schema graph of the shipped order system: every function reads its
//! input topics with its handler's own schema, and evolved schemas of
//! orders.created are read, skipped or refused as documented (docs/schemas.md).
//! Here, not in the runtime, because it needs the order system's handlers.

use std::path::{Path, PathBuf};

use kfn::config::Config;
use kfn::schema_check::{check_graph, GraphReport, ReaderSchemas};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn shipped_readers() -> ReaderSchemas {
    ReaderSchemas::from_dir(&workspace().join("schemas")).unwrap()
}

/// The shipped functions.toml with `orders.created`'s schema replaced by
/// `schema` (a path under the workspace), every schema path made absolute,
/// written to a temporary folder and loaded.
fn shipped_with_order_schema(schema: &str) -> (tempfile::TempDir, Config) {
    let text = std::fs::read_to_string(workspace().join("functions.toml")).unwrap();
    let from = "schema = \"schemas/order_created.avsc\"";
    assert!(text.contains(from), "the shipped functions.toml no longer contains {from:?}");
    let text = text.replacen(from, &format!("schema = \"{schema}\""), 1);
    let root = workspace().display().to_string();
    let text = text.replace("schema = \"schemas/", &format!("schema = \"{root}/schemas/"));
    let text = text.replace("openapi = \"docs/", &format!("openapi = \"{root}/docs/"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("functions.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load_file_only(&path, &kfn_functions::registry()).unwrap_or_else(|e| panic!("{e}"));
    (dir, config)
}

fn graph_of(schema: &str) -> GraphReport {
    let (_dir, config) = shipped_with_order_schema(schema);
    check_graph(&config, &kfn_functions::registry(), &shipped_readers())
}

#[test]
fn the_readers_of_the_schemas_folder_are_the_files_the_functions_crate_pairs_with_its_types() {
    let readers = shipped_readers();
    let found: Vec<(String, String)> = readers
        .events()
        .map(|(event, files)| {
            assert_eq!(files.len(), 1, "{event} is declared by {files:?}");
            (event.to_string(), files[0].file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    let mut expected: Vec<(String, String)> =
        kfn_functions::events::schema_files().iter().map(|(e, f)| (e.to_string(), f.to_string())).collect();
    expected.sort();
    assert_eq!(found, expected);
    assert!(readers.skipped().is_empty(), "{:?}", readers.skipped());
    assert!(readers.files("com.tutorial.orders.OrderCreated")[0].ends_with("schemas/order_created.avsc"));
}

#[test]
fn the_shipped_graph_reads_every_topic_with_the_handlers_own_schema() {
    let config = Config::load_file_only(&workspace().join("functions.toml"), &kfn_functions::registry()).unwrap();
    let report = check_graph(&config, &kfn_functions::registry(), &shipped_readers());
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    // The graph covers each input of the topic functions, handlers and aggregate folds alike.
    let handler_inputs: usize = config.functions.values().map(|f| f.inputs().len()).sum();
    assert!(handler_inputs >= 5, "the shipped system has its topic functions");
    assert_eq!(report.reads.len(), handler_inputs);
    let metrics = report.reads.iter().find(|r| r.function == "order_metrics").expect("order_metrics reads");
    assert_eq!((&*metrics.topic, &*metrics.event), ("orders.created", "com.tutorial.orders.OrderCreated"));
    // One function reading several topics: each read with the event type of its topic.
    let track: Vec<_> = report.reads.iter().filter(|r| r.function == "track").map(|r| (&*r.topic, &*r.event)).collect();
    assert_eq!(track.len(), 7, "{track:?}");
    assert!(track.contains(&("shipments.dispatched", "com.tutorial.orders.ShipmentDispatched")), "{track:?}");
    let validation = report.reads.iter().find(|r| r.function == "validation").expect("validation reads");
    assert_eq!(validation.event, "com.tutorial.orders.OrderCreated");
    assert_eq!(validation.topic, "orders.created");
    assert!(validation.reader.as_ref().is_some_and(|r| r.ends_with("schemas/order_created.avsc")), "{validation:?}");
}

#[test]
fn an_added_optional_field_is_read_by_the_v1_handler() {
    let report = graph_of("schemas/evolution/order_created_v2.avsc");
    assert!(report.is_ok(), "{:?}", report.problems);
    let validation = report.reads.iter().find(|r| r.function == "validation").unwrap();
    assert!(validation.writer.ends_with("evolution/order_created_v2.avsc"));
}

#[test]
fn an_added_required_field_is_skipped_by_the_v1_handler() {
    // Not backward compatible for a registry (new readers cannot read old data),
    // but the handler reads with v1, which ignores the extra field: the graph is fine.
    let report = graph_of("schemas/evolution/order_created_required_field.avsc");
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn a_removed_field_the_handler_needs_is_an_error_naming_everything() {
    let report = graph_of("schemas/evolution/order_created_removed_field.avsc");
    // Every handler reading orders.created is reported, validation among them.
    assert_eq!(report.problems.len(), orders_created_input_fields().len(), "{:?}", report.problems);
    let problem =
        report.problems.iter().find(|p| p.field == "functions.validation.input").expect("validation reported");
    assert_eq!(problem.field, "functions.validation.input");
    assert!(problem.source.ends_with("functions.toml"), "{problem}");
    for part in [
        "handler validate_order",
        "com.tutorial.orders.OrderCreated",
        "schemas/order_created.avsc",
        "orders.created",
        "evolution/order_created_removed_field.avsc",
        "function order_api, output created",
        "shipping_address",
    ] {
        assert!(problem.message.contains(part), "{problem} lacks {part:?}");
    }
}

#[test]
fn an_event_no_file_declares_is_checked_by_name_only_and_said_so() {
    let config = Config::load_file_only(&workspace().join("functions.toml"), &kfn_functions::registry()).unwrap();
    let report = check_graph(&config, &kfn_functions::registry(), &ReaderSchemas::default());
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.notes.len(), report.reads.len(), "{:?}", report.notes);
    assert!(report.notes.iter().any(|n| n.contains("com.tutorial.orders.OrderCreated") && n.contains("validation")));
    assert!(report.reads.iter().all(|r| r.reader.is_none()));
}

#[test]
fn two_readers_of_one_event_are_an_error_for_its_consumers_only() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["order_created.avsc", "order_validated.avsc", "evolution/order_created_v2.avsc"] {
        let target = dir.path().join(Path::new(name).file_name().unwrap());
        std::fs::copy(workspace().join("schemas").join(name), target).unwrap();
    }
    std::fs::write(dir.path().join("broken.avsc"), "{\"type\": \"record\"").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a schema").unwrap();
    let readers = ReaderSchemas::from_dir(dir.path()).unwrap();
    assert_eq!(readers.files("com.tutorial.orders.OrderCreated").len(), 2);
    assert_eq!(readers.skipped().len(), 1, "only .avsc files are read: {:?}", readers.skipped());

    let config = Config::load_file_only(&workspace().join("functions.toml"), &kfn_functions::registry()).unwrap();
    let report = check_graph(&config, &kfn_functions::registry(), &readers);
    let fields: Vec<String> = report.problems.iter().map(|p| p.field.clone()).collect();
    assert_eq!(fields, orders_created_input_fields(), "{:?}", report.problems);
    assert!(report.problems.iter().all(|p| p.message.contains("order_created_v2.avsc")), "{:?}", report.problems);
    assert!(report.notes.iter().any(|n| n.contains("broken.avsc")), "{:?}", report.notes);
}

/// The input fields of the shipped config's handler functions that read orders.created, in config order.
fn orders_created_input_fields() -> Vec<String> {
    let config = Config::load_file_only(&workspace().join("functions.toml"), &kfn_functions::registry()).unwrap();
    let mut fields = Vec::new();
    // Handlers and aggregate folds alike (order_metrics and top_products read orders.created).
    for f in config.functions.values() {
        for (i, _) in f.inputs().iter().enumerate().filter(|(_, input)| *input == "orders.created") {
            fields.push(f.input_field(i));
        }
    }
    fields
}
