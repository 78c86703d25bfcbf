//! The ACL plan of the shipped functions.toml, and CreateAcls/DescribeAcls
//! encoding round trips through kafka-protocol at every version.

use std::collections::BTreeSet;

use bytes::BytesMut;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use proptest::prelude::*;

use super::*;
use crate::config::Config;

fn shipped_config() -> Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions.toml");
    Config::load_file_only(&path, &kfn_functions::registry()).expect("the shipped functions.toml is valid")
}

/// The plan for the shipped functions.toml with one user per function,
/// written out by hand from the file's [functions] tables.
const PER_FUNCTION_PLAN: &str = "\
User:kfn-order_api ALLOW WRITE on TOPIC orders.created (LITERAL) from *
User:kfn-order_api ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
User:kfn-validation ALLOW READ on TOPIC orders.created (LITERAL) from *
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
User:kfn-notify ALLOW IDEMPOTENT_WRITE on CLUSTER kafka-cluster (LITERAL) from *
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
    config.security.sasl = Some(crate::config::SaslSettings {
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

#[test]
fn wire_codes_are_kafkas() {
    // org.apache.kafka.common.{resource.ResourceType, resource.PatternType, acl.AclOperation, acl.AclPermissionType}.
    assert_eq!(ResourceType::Topic.code(), 2);
    assert_eq!(ResourceType::Group.code(), 3);
    assert_eq!(ResourceType::Cluster.code(), 4);
    assert_eq!(ResourceType::TransactionalId.code(), 5);
    assert_eq!(PatternType::Literal.code(), 3);
    assert_eq!(PatternType::Prefixed.code(), 4);
    assert_eq!(Operation::Read.code(), 3);
    assert_eq!(Operation::Write.code(), 4);
    assert_eq!(Operation::Describe.code(), 8);
    assert_eq!(Operation::IdempotentWrite.code(), 12);
    assert_eq!(Permission::Allow.code(), 3);
    for op in Operation::ALL {
        assert_eq!(Operation::from_code(op.code()).expect("known"), *op);
    }
    // ANY and MATCH are filter values, never a binding's.
    assert!(matches!(Operation::from_code(1), Err(AclError::UnknownCode { what: "operation", code: 1 })));
    assert!(PatternType::from_code(2).is_err());
    assert!(ResourceType::from_code(0).is_err());
}

fn encode<T: Encodable>(message: &T, version: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).expect("encode");
    buf
}

#[test]
fn create_request_round_trips_at_every_version() {
    let plan = plan(&shipped_config(), &Principals::PerFunction);
    let request = create_request(&plan);
    for version in CreateAclsRequest::VERSIONS.min..=CreateAclsRequest::VERSIONS.max {
        let mut buf = encode(&request, version);
        let decoded = CreateAclsRequest::decode(&mut buf, version).expect("decode");
        assert!(buf.is_empty(), "v{version}: trailing bytes");
        assert_eq!(decoded, request, "v{version}");
        let back: Vec<_> =
            decoded.creations.iter().map(|c| AclBinding::from_creation(c).expect("known codes")).collect();
        assert_eq!(back, plan, "v{version}");
    }
}

#[test]
fn describe_request_carries_the_filter() {
    let filter = AclFilter {
        resource_type: Some(ResourceType::Topic),
        resource_name: Some("orders.created".into()),
        principal: Some("User:kfn-validation".into()),
    };
    let request = filter.to_request();
    for version in DescribeAclsRequest::VERSIONS.min..=DescribeAclsRequest::VERSIONS.max {
        let mut buf = encode(&request, version);
        let decoded = DescribeAclsRequest::decode(&mut buf, version).expect("decode");
        assert_eq!(decoded.resource_type_filter, 2);
        assert_eq!(decoded.resource_name_filter.as_deref(), Some("orders.created"));
        assert_eq!(decoded.principal_filter.as_deref(), Some("User:kfn-validation"));
        assert_eq!((decoded.pattern_type_filter, decoded.operation, decoded.permission_type), (1, 1, 1));
        assert_eq!(decoded.host_filter, None);
    }
    let all = AclFilter::default().to_request();
    assert_eq!((all.resource_type_filter, all.resource_name_filter, all.principal_filter), (1, None, None));
}

/// A DescribeAcls answer listing `bindings`, grouped by resource as a broker does.
fn described(bindings: &[AclBinding]) -> DescribeAclsResponse {
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in bindings {
        let acl = AclDescription::default()
            .with_principal(StrBytes::from_string(b.principal.clone()))
            .with_host(StrBytes::from_string(b.host.clone()))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission.code());
        let same = |r: &&mut DescribeAclsResource| {
            r.resource_type == b.resource_type.code()
                && r.pattern_type == b.pattern.code()
                && r.resource_name.as_str() == b.resource_name
        };
        match resources.iter_mut().find(|r| same(r)) {
            Some(r) => r.acls.push(acl),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                    .with_pattern_type(b.pattern.code())
                    .with_acls(vec![acl]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

#[test]
fn describe_response_decodes_to_the_bindings() {
    let plan = plan(&shipped_config(), &Principals::PerFunction);
    let response = described(&plan);
    for version in DescribeAclsRequest::VERSIONS.min..=DescribeAclsRequest::VERSIONS.max {
        let mut buf = encode(&response, version);
        let decoded = DescribeAclsResponse::decode(&mut buf, version).expect("decode");
        let mut got = Vec::new();
        for r in &decoded.resources {
            got.extend(AclBinding::from_described(r).expect("known codes"));
        }
        let got: BTreeSet<_> = got.into_iter().collect();
        let want: BTreeSet<_> = plan.iter().cloned().collect();
        assert_eq!(got, want, "v{version}");
    }
}

fn binding() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(ResourceType::ALL),
        "[a-zA-Z0-9._-]{1,40}",
        prop::sample::select(PatternType::ALL),
        "User:[a-z0-9-]{1,20}",
        prop_oneof![Just("*".to_string()), "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}"],
        prop::sample::select(Operation::ALL),
        prop::sample::select(Permission::ALL),
    )
        .prop_map(|(resource_type, resource_name, pattern, principal, host, operation, permission)| AclBinding {
            resource_type,
            resource_name,
            pattern,
            principal,
            host,
            operation,
            permission,
        })
}

proptest! {
    #[test]
    fn any_binding_survives_create_acls(bindings in prop::collection::vec(binding(), 0..8), version in 1i16..=3) {
        let request = create_request(&bindings);
        let mut buf = encode(&request, version);
        let decoded = CreateAclsRequest::decode(&mut buf, version).expect("decode");
        let back: Vec<_> = decoded.creations.iter().map(|c: &AclCreation| AclBinding::from_creation(c).expect("codes")).collect();
        prop_assert_eq!(back, bindings);
    }
}

#[test]
fn a_response_without_results_as_tansu_sends_it_is_reported_not_fatal() {
    // tansu's answer to CreateAcls (captured from the broker): throttle time 0
    // and no results array at all; from v2 on, then the empty tagged fields.
    let flexible: &[u8] = &[0, 0, 0, 0, /* tagged fields */ 0];
    let classic: &[u8] = &[0, 0, 0, 0];
    for (version, frame) in [(3i16, flexible), (2, flexible), (1, classic)] {
        // kafka-protocol's own decoder refuses it: the reason the wrapper exists.
        assert!(CreateAclsResponse::decode(&mut bytes::Bytes::from_static(frame), version).is_err(), "v{version}");
        let answer = CreateAclsAnswer::decode(&mut bytes::Bytes::from_static(frame), version).expect("tolerated");
        assert!(answer.results_missing, "v{version}");
        assert!(answer.response.results.is_empty());
        // Written back, it is the same frame.
        assert_eq!(&encode(&answer, version)[..], frame, "v{version}");
        assert_eq!(answer.compute_size(version).expect("size"), frame.len());
    }
    // A null array (not allowed by the spec either) is read the same way.
    let null_v3: &[u8] = &[0, 0, 0, 0, 0, 0];
    let null_v1: &[u8] = &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    for (version, frame) in [(3i16, null_v3), (1, null_v1)] {
        let answer = CreateAclsAnswer::decode(&mut bytes::Bytes::from_static(frame), version).expect("tolerated");
        assert!(answer.results_missing, "v{version}");
    }
}

#[test]
fn results_are_decoded_as_kafka_protocol_does() {
    for version in CreateAclsResponse::VERSIONS.min..=CreateAclsResponse::VERSIONS.max {
        // An empty array is not a null one.
        let empty = CreateAclsResponse::default();
        let answer = CreateAclsAnswer::decode(&mut encode(&empty, version), version).expect("empty");
        assert!(!answer.results_missing, "v{version}");
        let response = CreateAclsResponse::default().with_throttle_time_ms(7).with_results(vec![
            AclCreationResult::default(),
            AclCreationResult::default()
                .with_error_code(31)
                .with_error_message(Some(StrBytes::from_static_str("no authorizer"))),
        ]);
        let answer = CreateAclsAnswer::decode(&mut encode(&response, version), version).expect("decode");
        assert!(!answer.results_missing);
        assert_eq!(answer.response, response, "v{version}");
    }
}

#[test]
fn the_wrapped_request_is_kafka_protocols() {
    let bindings = plan(&shipped_config(), &Principals::PerFunction);
    let wrapped = CreateAcls(create_request(&bindings));
    assert_eq!(<CreateAcls as Request>::KEY, 30);
    for version in CreateAclsRequest::VERSIONS.min..=CreateAclsRequest::VERSIONS.max {
        assert_eq!(encode(&wrapped, version), encode(&wrapped.0, version), "v{version}");
        assert_eq!(
            <CreateAcls as HeaderVersion>::header_version(version),
            <CreateAclsRequest as HeaderVersion>::header_version(version)
        );
        assert_eq!(
            <CreateAclsAnswer as HeaderVersion>::header_version(version),
            <CreateAclsResponse as HeaderVersion>::header_version(version)
        );
    }
}
