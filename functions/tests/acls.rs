//! The ACL plan (`kfn acls plan`) of the shipped functions.toml, loaded with
//! the order system's handlers: exactly what each function declares.

use std::collections::BTreeSet;

use kfn::acls::{function_acls, plan, Principals};
use kfn::config::Config;
use kfn::kafka::acl::{AclBinding, Operation, PatternType, ResourceType};

fn shipped_config() -> Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions.toml");
    Config::load_file_only(&path, &kfn_functions::registry()).expect("the shipped functions.toml is valid")
}

/// The plan for the shipped functions.toml with one user per function,
/// written out by hand from the file's [functions] tables.
const PER_FUNCTION_PLAN: &str = "\
User:kfn-order_api ALLOW READ on TOPIC order_api.idempotency (LITERAL) from *
User:kfn-order_api ALLOW WRITE on TOPIC orders.created (LITERAL) from *
User:kfn-order_api ALLOW WRITE on TOPIC order_api.idempotency (LITERAL) from *
User:kfn-order_api ALLOW WRITE on TRANSACTIONAL_ID kfn.order_api. (PREFIXED) from *
User:kfn-order_api ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.order_api. (PREFIXED) from *
User:kfn-order_api ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
User:kfn-validation ALLOW READ on TOPIC orders.created (LITERAL) from *
User:kfn-validation ALLOW READ on TOPIC shop.products (LITERAL) from *
User:kfn-validation ALLOW READ on GROUP kfn.validation (LITERAL) from *
User:kfn-validation ALLOW WRITE on TOPIC orders.validated (LITERAL) from *
User:kfn-validation ALLOW WRITE on TOPIC orders.rejected (LITERAL) from *
User:kfn-validation ALLOW WRITE on TOPIC validation.dlq (LITERAL) from *
User:kfn-validation ALLOW WRITE on TRANSACTIONAL_ID kfn.validation. (PREFIXED) from *
User:kfn-validation ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.validation. (PREFIXED) from *
User:kfn-validation ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
User:kfn-payment ALLOW READ on TOPIC orders.validated (LITERAL) from *
User:kfn-payment ALLOW READ on TOPIC payment.retry (LITERAL) from *
User:kfn-payment ALLOW READ on GROUP kfn.payment (LITERAL) from *
User:kfn-payment ALLOW WRITE on TOPIC payments.processed (LITERAL) from *
User:kfn-payment ALLOW WRITE on TOPIC payments.failed (LITERAL) from *
User:kfn-payment ALLOW WRITE on TOPIC payment.dlq (LITERAL) from *
User:kfn-payment ALLOW WRITE on TOPIC payment.retry (LITERAL) from *
User:kfn-payment ALLOW WRITE on TRANSACTIONAL_ID kfn.payment. (PREFIXED) from *
User:kfn-payment ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.payment. (PREFIXED) from *
User:kfn-payment ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
User:kfn-inventory ALLOW READ on TOPIC payments.processed (LITERAL) from *
User:kfn-inventory ALLOW READ on GROUP kfn.inventory (LITERAL) from *
User:kfn-inventory ALLOW WRITE on TOPIC inventory.reserved (LITERAL) from *
User:kfn-inventory ALLOW WRITE on TOPIC inventory.reservations (LITERAL) from *
User:kfn-inventory ALLOW WRITE on TOPIC shipments.created (LITERAL) from *
User:kfn-inventory ALLOW WRITE on TOPIC inventory.dlq (LITERAL) from *
User:kfn-inventory ALLOW WRITE on TRANSACTIONAL_ID kfn.inventory. (PREFIXED) from *
User:kfn-inventory ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.inventory. (PREFIXED) from *
User:kfn-inventory ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
User:kfn-warehouse ALLOW READ on TOPIC shipments.created (LITERAL) from *
User:kfn-warehouse ALLOW READ on GROUP kfn.warehouse (LITERAL) from *
User:kfn-warehouse ALLOW WRITE on TOPIC shipments.dispatched (LITERAL) from *
User:kfn-warehouse ALLOW WRITE on TOPIC warehouse.dlq (LITERAL) from *
User:kfn-warehouse ALLOW WRITE on TRANSACTIONAL_ID kfn.warehouse. (PREFIXED) from *
User:kfn-warehouse ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.warehouse. (PREFIXED) from *
User:kfn-warehouse ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
User:kfn-notify ALLOW READ on TOPIC orders.rejected (LITERAL) from *
User:kfn-notify ALLOW READ on TOPIC payments.failed (LITERAL) from *
User:kfn-notify ALLOW READ on TOPIC payments.processed (LITERAL) from *
User:kfn-notify ALLOW READ on TOPIC shipments.dispatched (LITERAL) from *
User:kfn-notify ALLOW READ on GROUP kfn.notify (LITERAL) from *
User:kfn-notify ALLOW WRITE on TOPIC notifications.outbound (LITERAL) from *
User:kfn-notify ALLOW WRITE on TOPIC notify.dlq (LITERAL) from *
User:kfn-notify ALLOW WRITE on TRANSACTIONAL_ID kfn.notify. (PREFIXED) from *
User:kfn-notify ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.notify. (PREFIXED) from *
User:kfn-notify ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
User:kfn-order_metrics ALLOW READ on TOPIC orders.created (LITERAL) from *
User:kfn-order_metrics ALLOW READ on GROUP kfn.order_metrics (LITERAL) from *
User:kfn-order_metrics ALLOW READ on TOPIC analytics.order-metrics (LITERAL) from *
User:kfn-order_metrics ALLOW READ on GROUP kfn.order_metrics.repartition (LITERAL) from *
User:kfn-order_metrics ALLOW READ on TOPIC order_metrics.repartition (LITERAL) from *
User:kfn-order_metrics ALLOW WRITE on TOPIC analytics.order-metrics (LITERAL) from *
User:kfn-order_metrics ALLOW WRITE on TOPIC order_metrics.repartition (LITERAL) from *
User:kfn-order_metrics ALLOW WRITE on TOPIC order_metrics.dlq (LITERAL) from *
User:kfn-order_metrics ALLOW WRITE on TRANSACTIONAL_ID kfn.order_metrics. (PREFIXED) from *
User:kfn-order_metrics ALLOW DESCRIBE on TRANSACTIONAL_ID kfn.order_metrics. (PREFIXED) from *
User:kfn-order_metrics ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
";

#[test]
fn the_shipped_functions_get_exactly_what_they_declare() {
    let config = shipped_config();
    let plan = plan(&config, &Principals::PerFunction);
    // Every function has a principal of its own in the plan.
    let principals: std::collections::BTreeSet<String> = plan.iter().map(|b| b.principal.clone()).collect();
    assert_eq!(principals.len(), config.functions.len());
    // The hand-written plan covers the order pipeline's functions; compared as sorted lines
    // (the config's maps do not keep file order).
    let mut want: Vec<&str> = PER_FUNCTION_PLAN.lines().collect();
    let covered: std::collections::BTreeSet<&str> = want.iter().filter_map(|l| l.split(' ').next()).collect();
    let mut got: Vec<String> =
        plan.iter().filter(|b| covered.contains(b.principal.as_str())).map(ToString::to_string).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_shared_user_gets_the_union_once() {
    let config = shipped_config();
    let per_function = plan(&config, &Principals::PerFunction);
    let shared = plan(&config, &Principals::Shared("kfn".into()));
    assert!(shared.iter().all(|b| b.principal == "User:kfn"));
    let distinct: BTreeSet<_> = shared.iter().collect();
    assert_eq!(distinct.len(), shared.len(), "no binding twice");
    let what = |b: &AclBinding| (b.operation, b.resource_type, b.pattern, b.resource_name.clone());
    let union: BTreeSet<_> = per_function.iter().map(what).collect();
    let got: BTreeSet<_> = shared.iter().map(what).collect();
    assert_eq!(got, union);
    // Four functions read orders.created; the shared user needs it once.
    let created = shared.iter().filter(|b| b.resource_name == "orders.created" && b.operation == Operation::Read);
    assert_eq!(created.count(), 1);
}

#[test]
fn principals_come_from_the_sasl_user_when_configured() {
    let mut config = shipped_config();
    assert_eq!(Principals::from_config(&config), Principals::PerFunction);
    config.security.sasl = Some(kfn::config::SaslSettings {
        mechanism: "SCRAM-SHA-512".into(),
        username: "kfn-prod".into(),
        password_env: "KFN_SASL_PASSWORD".into(),
        password: "secret".into(),
    });
    let principals = Principals::from_config(&config);
    assert_eq!(principals, Principals::Shared("kfn-prod".into()));
    assert_eq!(principals.principal("validation"), "User:kfn-prod");
    assert_eq!(Principals::PerFunction.principal("validation"), "User:kfn-validation");
}

#[test]
fn transactional_prefix_covers_the_workers_ids() {
    // Exactly-once workers use kfn.<function>.<topic>.<partition> (invoker/worker.rs).
    let config = shipped_config();
    let function = &config.functions["validation"];
    let acls = function_acls(function, "User:x");
    let prefixed: Vec<_> = acls.iter().filter(|b| b.resource_type == ResourceType::TransactionalId).collect();
    assert_eq!(prefixed.len(), 2);
    let id = format!("kfn.{}.{}.{}", function.name, "orders.created", 3);
    assert!(prefixed.iter().all(|b| b.pattern == PatternType::Prefixed && id.starts_with(&b.resource_name)));
    // The prefix ends at the dot, so function "validation2" is not covered.
    assert!(!"kfn.validation2.orders.created.0".starts_with(&prefixed[0].resource_name));
}
