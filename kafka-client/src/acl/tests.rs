//! CreateAcls/DescribeAcls encoding round trips through kafka-protocol at
//! every version (the shipped plan is tested with the order system, in functions/tests/acls.rs).

use std::collections::BTreeSet;

use bytes::BytesMut;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use proptest::prelude::*;

use super::*;

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

/// The bindings of one exactly-once function (every resource type, both
/// pattern types, each operation kfn grants), written out by hand.
fn sample_bindings() -> Vec<AclBinding> {
    use Operation::{Describe, IdempotentWrite, Read, Write};
    use PatternType::{Literal, Prefixed};
    let user = "User:kfn-validation";
    vec![
        AclBinding::allow(user, Read, ResourceType::Topic, Literal, "orders.created"),
        AclBinding::allow(user, Read, ResourceType::Group, Literal, "kfn.validation"),
        AclBinding::allow(user, Write, ResourceType::Topic, Literal, "orders.validated"),
        AclBinding::allow(user, Write, ResourceType::Topic, Literal, "validation.dlq"),
        AclBinding::allow(user, Write, ResourceType::TransactionalId, Prefixed, "kfn.validation."),
        AclBinding::allow(user, Describe, ResourceType::TransactionalId, Prefixed, "kfn.validation."),
        AclBinding::allow(user, IdempotentWrite, ResourceType::Cluster, Literal, CLUSTER_RESOURCE),
        AclBinding::allow("User:kfn-payment", Read, ResourceType::Topic, Literal, "orders.validated"),
    ]
}

fn encode<T: Encodable>(message: &T, version: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).expect("encode");
    buf
}

#[test]
fn create_request_round_trips_at_every_version() {
    let plan = sample_bindings();
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
    let plan = sample_bindings();
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
    let bindings = sample_bindings();
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
