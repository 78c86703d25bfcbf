//! Topics created through kfn exist on the real broker with their partition counts and configs.

use kfn::kafka::{Admin, CreateOutcome, NewTopic};
use kfn::kafka_settings::EnsureTopics;

#[tokio::test]
async fn topics_are_created_with_partitions_and_configs() {
    let admin = Admin::new(kfn_tests::cluster());
    let name = kfn_tests::unique("created");
    let compacted = kfn_tests::unique("table");
    let topics = vec![
        NewTopic {
            name: name.clone(),
            partitions: 6,
            replication: 1,
            configs: [
                ("retention.ms".to_string(), "604800000".to_string()),
                ("cleanup.policy".into(), "delete".into()),
            ]
            .into(),
        },
        NewTopic {
            name: compacted.clone(),
            partitions: 3,
            replication: 1,
            configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
        },
    ];
    let outcomes = admin.create_topics(&topics).await.expect("create");
    assert_eq!(outcomes, vec![(name.clone(), CreateOutcome::Created), (compacted.clone(), CreateOutcome::Created)]);

    let described = admin.describe_topic(&name).await.expect("describe");
    assert_eq!(described.partitions, 6);
    assert_eq!(described.configs.get("retention.ms").map(String::as_str), Some("604800000"));
    assert_eq!(described.configs.get("cleanup.policy").map(String::as_str), Some("delete"));
    let described = admin.describe_topic(&compacted).await.expect("describe");
    assert_eq!(described.partitions, 3);
    assert_eq!(described.configs.get("cleanup.policy").map(String::as_str), Some("compact"));

    // A second create leaves the topic alone and says so.
    let again = admin.create_topics(&topics[..1]).await.expect("create again");
    assert_eq!(again, vec![(name, CreateOutcome::AlreadyExists)]);
}

#[tokio::test]
async fn the_declared_topics_are_created_from_functions_toml() {
    let registry = kfn_functions::registry();
    let mut config =
        kfn::config::Config::load_file_only(&kfn_tests::workspace_root().join("functions.toml"), &registry)
            .expect("config");
    config.apply_local_overrides();
    // Unique names, so this test does not collide with others on the same broker.
    let suffix = kfn_tests::unique("");
    let specs: Vec<_> = config
        .topics
        .values()
        .map(|t| {
            let mut t = t.clone();
            t.name = format!("{}{suffix}", t.name);
            t
        })
        .collect();
    let admin = Admin::new(kfn_tests::cluster());
    let outcomes = admin.ensure_topics(specs.iter()).await.expect("ensure topics");
    assert_eq!(outcomes.len(), specs.len());
    for spec in &specs {
        let d = admin.describe_topic(&spec.name).await.expect("describe");
        assert_eq!(d.partitions, spec.partitions, "{}", spec.name);
        let retention = spec.retention.map(|r| r.as_millis().to_string());
        assert_eq!(d.configs.get("retention.ms").cloned(), retention, "{}", spec.name);
    }
}
