//! terraform/ against the secured Apache Kafka of `kfn dev --secure` (SASL_SSL,
//! ACLs enforced): the module kfn writes for this cluster is formatted as
//! OpenTofu writes HCL, and states exactly what the broker holds once the
//! same plan is applied.
//!
//! `tofu apply` itself cannot run here: the Go module proxy refuses the
//! providers the module names (Mongey/kafka, a schema-registry provider; see
//! docs/deploy.md), and no provider registry is reachable. So kfn applies its
//! own plan (`kfn topics create`, `kfn acls apply --per-function`) and the
//! test compares the broker's answer with the module, resource by resource.

use kfn::kafka_settings::EnsureTopics;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use kfn::acls::{deployment_plan, Principals};
use kfn::avro::RegistryClient;
use kfn::config::Config;
use kfn::kafka::acl::{AclFilter, Acls, Applied};
use kfn::kafka::{Admin, CreateOutcome};
use kfn::registry::{RegistryConfig, RegistryServer};
use kfn::schema_check::{check_registry, Verdict};
use kfn::terraform::{quote, relative_dir, Module, Settings};
use kfn_tests::secured::secured;

/// OpenTofu as scripts/terraform-tools builds it: `KFN_TOFU`, else the cache's.
fn tofu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KFN_TOFU") {
        return Some(PathBuf::from(path));
    }
    let cache = kfn::dev::tansu::cache_dir().ok()?;
    Some(cache.join("go/bin/tofu")).filter(|p| p.is_file())
}

/// The entries of a `locals` map in a generated file: key, then the block's lines.
fn entries(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut entries = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        if line.starts_with("    \"") && line.ends_with(" = {") {
            current = Some((line.trim().trim_end_matches(" = {").to_string(), Vec::new()));
        } else if line == "    }" {
            if let Some((key, lines)) = current.take() {
                entries.insert(key, lines);
            }
        } else if let Some((_, lines)) = &mut current {
            lines.push(line.trim().to_string());
        }
    }
    entries
}

/// `key = value` of one line, both unquoted.
fn attribute(line: &str) -> Option<(String, String)> {
    let (key, value) = line.split_once(" = ")?;
    Some((key.trim().trim_matches('"').to_string(), value.trim().trim_matches('"').to_string()))
}

#[tokio::test]
async fn the_module_states_what_the_secured_broker_holds_once_the_plan_is_applied() {
    let secured = secured();
    let root = kfn_tests::workspace_root();
    let mut config = Config::load_file_only(&root.join("functions.toml"), &kfn_functions::registry())
        .expect("the shipped functions.toml");
    // One node: [local] replication 1, as `kfn terraform --local` writes it.
    config.apply_local_overrides();
    let plan = deployment_plan(&config, &Principals::PerFunction);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = root.canonicalize().expect("the workspace root");
    let settings = Settings { project_dir: relative_dir(dir.path(), &root), ..Settings::default() };
    let module = Module::render(&config, &plan, &settings).expect("the module renders");
    module.write(dir.path()).expect("the module is written");
    // Schema files resolve from the module's directory, as Terraform's file() will read them.
    let schemas = entries(&std::fs::read_to_string(dir.path().join("schemas.tf")).expect("schemas.tf"));
    for (subject, lines) in &schemas {
        let file = lines.iter().filter_map(|l| attribute(l)).find(|(k, _)| k == "file").expect("a file").1;
        assert!(dir.path().join(&file).is_file(), "{subject}: {file} does not resolve from the module");
    }

    match tofu() {
        Some(tofu) => {
            let out = std::process::Command::new(&tofu)
                .args(["fmt", "-check", "-diff", "-no-color"])
                .arg(dir.path())
                .output()
                .expect("tofu runs");
            assert!(
                out.status.success(),
                "tofu fmt -check: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => eprintln!(
            "terraform: not checking the module with tofu fmt: OpenTofu is not built \
             (run scripts/terraform-tools, or set KFN_TOFU); .ci/run builds it"
        ),
    }

    // kfn's own plan, applied by the admin: what `tofu apply` of the module would do.
    let admin = secured.admin();
    Admin::new(admin.clone()).ensure_topics(config.topics.values()).await.expect("the admin creates the topics");
    let acls = Acls::new(admin.clone());
    assert_eq!(acls.create(&plan).await.expect("CreateAcls"), Applied::Confirmed(plan.len()));
    assert!(acls.wait_listed(&plan, Duration::from_secs(30)).await.expect("DescribeAcls"), "ACLs not listed");

    // Every ACL of acls.tf is one the broker lists, with the fields the provider would send.
    let listed: BTreeMap<String, _> = acls
        .describe(&AclFilter::default())
        .await
        .expect("DescribeAcls")
        .into_iter()
        .map(|b| (quote(&b.to_string()), b))
        .collect();
    let stated = entries(&std::fs::read_to_string(dir.path().join("acls.tf")).expect("acls.tf"));
    assert_eq!(stated.len(), plan.len(), "acls.tf holds the plan, each binding once");
    for (key, lines) in &stated {
        let binding = listed.get(key).unwrap_or_else(|| panic!("{key} is in acls.tf but the broker does not list it"));
        let fields: BTreeMap<String, String> = lines.iter().filter_map(|l| attribute(l)).collect();
        assert_eq!(fields["principal"], binding.principal, "{key}");
        assert_eq!(fields["resource_name"], binding.resource_name, "{key}");
        assert_eq!(fields["operation"].to_ascii_uppercase(), binding.operation.as_str().replace('_', ""), "{key}");
        assert_eq!(fields["resource_type"].to_ascii_uppercase(), binding.resource_type.as_str().replace('_', ""));
    }

    // A second apply changes nothing: every topic exists, and the broker lists the same ACLs.
    // Counted for the plan's principals only: other tests of this binary may add their own users' ACLs.
    let principals: BTreeSet<&str> = plan.iter().map(|b| b.principal.as_str()).collect();
    let count = |listed: Vec<kfn::kafka::acl::AclBinding>| {
        listed.iter().filter(|b| principals.contains(b.principal.as_str())).count()
    };
    let before = count(acls.describe(&AclFilter::default()).await.expect("DescribeAcls"));
    let again = Admin::new(admin.clone()).ensure_topics(config.topics.values()).await.expect("topics again");
    assert!(again.iter().all(|(_, o)| *o == CreateOutcome::AlreadyExists), "created on the second apply: {again:?}");
    assert_eq!(acls.create(&plan).await.expect("CreateAcls again"), Applied::Confirmed(plan.len()));
    let after = count(acls.describe(&AclFilter::default()).await.expect("DescribeAcls"));
    assert_eq!(
        (before, after),
        (plan.len(), plan.len()),
        "the plan's principals hold exactly the plan, before and after"
    );

    // Every topic of topics.tf exists with its partitions, replication and configs.
    let stated = entries(&std::fs::read_to_string(dir.path().join("topics.tf")).expect("topics.tf"));
    let names: BTreeSet<String> = config.topics.keys().map(|t| quote(t)).collect();
    assert_eq!(stated.keys().cloned().collect::<BTreeSet<_>>(), names);
    let admin = Admin::new(admin);
    for (key, lines) in &stated {
        let name = key.trim_matches('"');
        let described = admin.describe_topic(name).await.unwrap_or_else(|e| panic!("describing {name}: {e}"));
        let fields: BTreeMap<String, String> = lines.iter().filter_map(|l| attribute(l)).collect();
        assert_eq!(fields["partitions"], described.partitions.to_string(), "{name}");
        assert_eq!(fields["replication_factor"], described.replication.to_string(), "{name}");
        for (config, value) in fields.iter().filter(|(k, _)| k.contains('.')) {
            assert_eq!(described.configs.get(config), Some(value), "{name}: {config}");
        }
    }
}

/// What `tofu apply` of schemas.tf does (POST each subject's schema file), done by kfn's
/// client against kfn's registry on the secured broker as `kfn-registry` (its planned ACLs):
/// afterwards `kfn check --online` agrees with the module, every subject compatible.
#[tokio::test]
async fn the_subjects_of_schemas_tf_registered_are_what_kfn_check_online_expects() {
    let secured = secured();
    let root = kfn_tests::workspace_root().canonicalize().expect("the workspace root");
    let mut config = Config::load_file_only(&root.join("functions.toml"), &kfn_functions::registry())
        .expect("the shipped functions.toml");
    config.apply_local_overrides();
    let plan = deployment_plan(&config, &Principals::PerFunction);
    let acls = Acls::new(secured.admin());
    acls.create(&plan).await.expect("CreateAcls");
    assert!(acls.wait_listed(&plan, Duration::from_secs(30)).await.expect("DescribeAcls"), "ACLs not listed");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = Settings { project_dir: relative_dir(dir.path(), &root), ..Settings::default() };
    let module = Module::render(&config, &plan, &settings).expect("the module renders");
    module.write(dir.path()).expect("the module is written");
    let subjects = entries(&std::fs::read_to_string(dir.path().join("schemas.tf")).expect("schemas.tf"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let registry = RegistryServer::start(secured.cluster("kfn-registry"), listener, RegistryConfig::default())
        .await
        .expect("kfn's registry starts as kfn-registry");
    let client = RegistryClient::new(&format!("http://{}", registry.local_addr()), None).expect("a client");
    for (subject, lines) in &subjects {
        let fields: BTreeMap<String, String> = lines.iter().filter_map(|l| attribute(l)).collect();
        let text = std::fs::read_to_string(dir.path().join(&fields["file"])).expect("the schema file");
        client.register(subject.trim_matches('"'), &text).await.unwrap_or_else(|e| panic!("{subject}: {e}"));
    }

    let report = check_registry(&config, &client).await;
    assert!(
        report.is_ok(),
        "kfn check --online fails after the module's subjects are registered: {:#?}",
        report.topics
    );
    for topic in &report.topics {
        let in_module = subjects.contains_key(&quote(&topic.subject));
        let want = if in_module { Verdict::Compatible } else { Verdict::NewSubject };
        assert_eq!(topic.verdict, want, "{}: in schemas.tf: {in_module}", topic.subject);
    }
    let compatible = report.topics.iter().filter(|t| t.verdict == Verdict::Compatible).count();
    assert_eq!(compatible, subjects.len(), "every subject of schemas.tf is one kfn checks");
}
