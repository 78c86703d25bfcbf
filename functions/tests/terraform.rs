//! terraform/ is what `kfn terraform` writes for the shipped functions.toml:
//! regenerated here, compared file by file, so a change of functions.toml
//! without `cargo run --bin orders -- terraform` fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kfn::acls::{deployment_plan, Principals};
use kfn::config::Config;
use kfn::terraform::{quote, Module, Settings};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped() -> (Config, Module) {
    let config = Config::load_file_only(&repo().join("functions.toml"), &kfn_functions::registry())
        .expect("the shipped functions.toml is valid");
    let plan = deployment_plan(&config, &Principals::from_config(&config));
    let module = Module::render(&config, &plan, &Settings::default()).expect("the module renders");
    (config, module)
}

#[test]
fn the_committed_terraform_module_is_what_kfn_terraform_writes() {
    let (_, module) = shipped();
    let drift = module.drift(&repo().join("terraform")).expect("terraform/ is readable");
    assert!(
        drift.is_empty(),
        "terraform/ is out of date with functions.toml: {drift:?}; run `cargo run --bin orders -- terraform`"
    );
}

/// The map keys of `locals { <name> = { "key" = { ... } } }`: the lines indented by four spaces.
fn keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("    \"") && l.ends_with(" = {"))
        .map(|l| l.trim_start().trim_end_matches(" = {").to_string())
        .collect()
}

fn file<'m>(module: &'m Module, name: &str) -> &'m str {
    &module.files.iter().find(|(n, _)| *n == name).expect("the module has the file").1
}

#[test]
fn the_module_grants_exactly_the_acl_plan_and_holds_every_topic() {
    let (config, module) = shipped();
    let plan = deployment_plan(&config, &Principals::PerFunction);
    let want: BTreeSet<String> = plan.iter().map(|b| quote(&b.to_string())).collect();
    assert_eq!(want.len(), plan.len(), "no binding twice in the plan");
    assert_eq!(keys(file(&module, "acls.tf")), want);
    // Every function's principal and the registry's are there, and nobody else.
    let principals: BTreeSet<&str> = plan.iter().map(|b| b.principal.as_str()).collect();
    assert_eq!(principals.len(), config.functions.len() + 1);
    assert!(principals.contains("User:kfn-registry"));

    let topics: BTreeSet<String> = config.topics.keys().map(|t| quote(t)).collect();
    assert_eq!(keys(file(&module, "topics.tf")), topics);
    assert!(topics.contains("\"validation.dlq\""), "derived dead-letter topics are created too");

    // Avro topics with a schema get a subject; the JSON topics (Connect's) none.
    let subjects = keys(file(&module, "schemas.tf"));
    assert!(subjects.contains("\"orders.created-value\""));
    assert!(!subjects.iter().any(|s| s.starts_with("\"shop.products") || s.starts_with("\"orders.view")));
    assert!(!subjects.contains("\"payment.retry-value\""), "a topic without a schema has no subject");
}

#[test]
fn replicated_topics_get_a_min_isr_that_survives_one_broker() {
    let (_, module) = shipped();
    let topics = file(&module, "topics.tf");
    let block = topics.split("    \"orders.created\" = {").nth(1).expect("orders.created is in topics.tf");
    let block = &block[..block.find("\n    }\n").expect("the block ends")];
    assert!(block.contains("replication_factor = 3"), "{block}");
    assert!(block.contains("\"min.insync.replicas\" = \"2\""), "{block}");
    assert!(block.contains("\"retention.ms\"        = \"604800000\""), "{block}");
}
