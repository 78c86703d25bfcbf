//! Tests of the consumer protocol encoding and of the assignors.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use super::assignor::{assignor_for, Assignor, MemberSubscription, RangeAssignor, StickyAssignor, SUPPORTED};
use super::protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, Assignment, ProtocolError,
    Subscription, TopicPartition,
};

type Plan = BTreeMap<String, Assignment>;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn member(id: &str, topics: &[&str], owned: &[(&str, i32)]) -> MemberSubscription {
    let mut m = MemberSubscription::new(id, topics.iter().map(|t| t.to_string()).collect());
    m.subscription.owned = owned.iter().map(|(t, p)| tp(t, *p)).collect();
    m
}

fn counts(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn parts(plan: &Plan, id: &str, topic: &str) -> Vec<i32> {
    plan[id].partitions.get(topic).cloned().unwrap_or_default()
}

/// The members of the next generation: `members` owning what `plan` gave them.
fn with_owned(members: &[MemberSubscription], plan: &Plan) -> Vec<MemberSubscription> {
    members
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.subscription.owned = plan[&m.member_id].topic_partitions().collect();
            m
        })
        .collect()
}

/// Every partition of every subscribed, known topic goes to exactly one
/// member that subscribes to it, and nothing else is assigned.
fn check_valid(members: &[MemberSubscription], counts: &BTreeMap<String, i32>, plan: &Plan) {
    let ids: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(plan.keys().map(String::as_str).collect::<BTreeSet<_>>(), ids);
    let mut expected = BTreeSet::new();
    for m in members {
        for t in &m.subscription.topics {
            for p in 0..counts.get(t).copied().unwrap_or(0) {
                expected.insert(tp(t, p));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (id, assignment) in plan {
        let m = members.iter().find(|m| &m.member_id == id).unwrap();
        for tp in assignment.topic_partitions() {
            assert!(m.subscription.topics.contains(&tp.topic), "{id} got {tp}");
            assert!(seen.insert(tp.clone()), "{tp} assigned twice");
        }
    }
    assert_eq!(seen, expected);
}

/// No partition could move to a member of its topic holding two fewer.
fn check_balanced(members: &[MemberSubscription], plan: &Plan) {
    for a in members {
        for b in members {
            let (na, nb) = (plan[&a.member_id].len(), plan[&b.member_id].len());
            if na < nb + 2 {
                continue;
            }
            for tp in plan[&a.member_id].topic_partitions() {
                assert!(
                    !b.subscription.topics.contains(&tp.topic),
                    "{} has {na}, {} has {nb} and could take {tp}",
                    a.member_id,
                    b.member_id
                );
            }
        }
    }
}

#[test]
fn subscription_wire_layout_is_version_then_body() {
    let bytes = encode_subscription(&["t".into()], &[tp("t", 0)], None).unwrap();
    let expected: &[u8] = &[
        0, 1, // version 1, no request header
        0, 0, 0, 1, 0, 1, b't', // topics ["t"]
        0xff, 0xff, 0xff, 0xff, // user data: null
        0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, // owned [t: [0]]
    ];
    assert_eq!(&bytes[..], expected);
}

#[test]
fn decodes_librdkafka_version_3_subscription() {
    // librdkafka 2.x writes version 3 with generation and rack.
    let message = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("orders"), StrBytes::from_static_str("pay")])
        .with_user_data(Some(Bytes::from_static(b"ud")))
        .with_owned_partitions(vec![OwnedTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![4, 1])])
        .with_generation_id(7)
        .with_rack_id(Some(StrBytes::from_static_str("rack-a")));
    let mut buf = BytesMut::new();
    buf.put_i16(3);
    message.encode(&mut buf, 3).unwrap();

    let sub = decode_subscription(&buf).unwrap();
    assert_eq!(sub.topics, ["orders", "pay"]);
    assert_eq!(sub.owned, [tp("orders", 1), tp("orders", 4)]);
    assert_eq!(sub.user_data.as_deref(), Some(&b"ud"[..]));
    assert_eq!(sub.generation_id, Some(7));
    assert_eq!(sub.rack_id.as_deref(), Some("rack-a"));
}

#[test]
fn newer_versions_read_as_the_latest_known() {
    let message =
        ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]).with_generation_id(2);
    let mut buf = BytesMut::new();
    buf.put_i16(9);
    message.encode(&mut buf, 3).unwrap();
    buf.put_slice(b"fields of a future version");
    let sub = decode_subscription(&buf).unwrap();
    assert_eq!((sub.topics, sub.generation_id), (vec!["t".to_string()], Some(2)));
}

#[test]
fn version_0_subscription_has_no_owned_partitions() {
    let message = ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]);
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    message.encode(&mut buf, 0).unwrap();
    let sub = decode_subscription(&buf).unwrap();
    assert_eq!(sub.topics, ["t"]);
    assert!(sub.owned.is_empty() && sub.generation_id.is_none());
}

#[test]
fn empty_assignment_bytes_are_an_empty_assignment() {
    assert_eq!(decode_assignment(&[]).unwrap(), Assignment::default());
}

#[test]
fn bad_metadata_is_an_error() {
    assert!(matches!(decode_subscription(&[]), Err(ProtocolError::MissingVersion { len: 0, .. })));
    assert!(matches!(decode_assignment(&[0]), Err(ProtocolError::MissingVersion { len: 1, .. })));
    assert!(matches!(decode_subscription(&[0xff, 0xff]), Err(ProtocolError::InvalidVersion { version: -1, .. })));
    // A topic count of 2^31 - 1 must fail, not reserve gigabytes.
    let huge = [0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1, b't'];
    assert!(matches!(decode_subscription(&huge), Err(ProtocolError::Malformed { version: 1, .. })));
    let huge = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1];
    assert!(matches!(decode_assignment(&huge), Err(ProtocolError::Malformed { .. })));
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}"
}

fn user_data() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from))
}

proptest! {
    #[test]
    fn subscription_round_trips(
        topics in proptest::collection::vec(topic_name(), 0..5),
        owned in proptest::collection::btree_set((topic_name(), 0..64i32), 0..12),
        user_data in user_data(),
    ) {
        let owned: Vec<TopicPartition> = owned.into_iter().map(|(t, p)| tp(&t, p)).collect();
        let bytes = encode_subscription(&topics, &owned, user_data.clone()).unwrap();
        let sub = decode_subscription(&bytes).unwrap();
        prop_assert_eq!(sub, Subscription { topics, owned, user_data, generation_id: None, rack_id: None });
    }

    #[test]
    fn assignment_round_trips(
        partitions in proptest::collection::btree_map(
            topic_name(), proptest::collection::btree_set(0..64i32, 1..8), 0..6),
        user_data in user_data(),
    ) {
        let assignment = Assignment {
            partitions: partitions.into_iter().map(|(t, ps)| (t, ps.into_iter().collect())).collect(),
            user_data,
        };
        let bytes = encode_assignment(&assignment).unwrap();
        prop_assert_eq!(decode_assignment(&bytes).unwrap(), assignment);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_subscription(&bytes);
        let _ = decode_assignment(&bytes);
    }
}

#[test]
fn supported_assignors_are_found_by_name() {
    assert_eq!(SUPPORTED, ["sticky", "range"]);
    for name in SUPPORTED {
        assert_eq!(assignor_for(name).map(|a| a.name()), Some(*name));
    }
    assert!(assignor_for("roundrobin").is_none());
}

#[test]
fn range_gives_first_members_the_extra_partitions() {
    // Given out of order: the assignor sorts by member id.
    let members = [member("c", &["t"], &[]), member("a", &["t"], &[]), member("b", &["t"], &[])];
    let plan = RangeAssignor.assign(&members, &counts(&[("t", 7)]));
    assert_eq!(parts(&plan, "a", "t"), [0, 1, 2]);
    assert_eq!(parts(&plan, "b", "t"), [3, 4]);
    assert_eq!(parts(&plan, "c", "t"), [5, 6]);
}

#[test]
fn range_works_per_topic() {
    let members = [member("a", &["x", "y"], &[]), member("b", &["x"], &[]), member("c", &["x", "y", "gone"], &[])];
    let plan = RangeAssignor.assign(&members, &counts(&[("x", 2), ("y", 5)]));
    assert_eq!(parts(&plan, "a", "x"), [0]);
    assert_eq!(parts(&plan, "b", "x"), [1]);
    assert!(parts(&plan, "c", "x").is_empty());
    assert_eq!(parts(&plan, "a", "y"), [0, 1, 2]);
    assert_eq!(parts(&plan, "c", "y"), [3, 4]);
    assert!(!plan["c"].partitions.contains_key("gone"));
}

#[test]
fn sticky_spreads_a_new_group_evenly() {
    let members = [member("a", &["t"], &[]), member("b", &["t"], &[]), member("c", &["t"], &[])];
    let plan = StickyAssignor.assign(&members, &counts(&[("t", 6)]));
    check_valid(&members, &counts(&[("t", 6)]), &plan);
    assert!(plan.values().all(|a| a.len() == 2));
}

#[test]
fn sticky_moves_only_the_leaving_members_partitions() {
    let members = [member("a", &["t"], &[("t", 0), ("t", 1)]), member("b", &["t"], &[("t", 2), ("t", 3)])];
    // "c" owned 4 and 5 and left.
    let plan = StickyAssignor.assign(&members, &counts(&[("t", 6)]));
    assert_eq!(parts(&plan, "a", "t"), [0, 1, 4]);
    assert_eq!(parts(&plan, "b", "t"), [2, 3, 5]);
}

#[test]
fn sticky_moves_only_what_a_joining_member_needs() {
    let members = [
        member("a", &["t"], &[("t", 0), ("t", 1), ("t", 2)]),
        member("b", &["t"], &[("t", 3), ("t", 4), ("t", 5)]),
        member("c", &["t"], &[]),
    ];
    let plan = StickyAssignor.assign(&members, &counts(&[("t", 6)]));
    assert_eq!(plan["c"].len(), 2);
    for (id, owned) in [("a", [0, 1, 2]), ("b", [3, 4, 5])] {
        let kept = parts(&plan, id, "t");
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|p| owned.contains(p)), "{id} kept {kept:?}");
    }
}

#[test]
fn sticky_balances_members_with_different_subscriptions() {
    // "c" only reads y, so "b" should take most of x.
    let members = [member("a", &["x", "y"], &[]), member("b", &["x"], &[]), member("c", &["y"], &[])];
    let topics = counts(&[("x", 4), ("y", 2)]);
    let plan = StickyAssignor.assign(&members, &topics);
    check_valid(&members, &topics, &plan);
    check_balanced(&members, &plan);
    assert!(plan.values().all(|a| a.len() == 2));
}

#[test]
fn sticky_rebalances_with_partitions_nobody_owned() {
    // Placing x-1, y-0 and y-1 loads "a" with 4; balance must then hand "b"
    // the fresh x-1 rather than the x-0 "a" already owned.
    let members = [
        member("a", &["x", "y"], &[("x", 0)]),
        member("b", &["x"], &[("x", 2)]),
        member("c", &["y"], &[("y", 2), ("y", 3), ("y", 4)]),
    ];
    let topics = counts(&[("x", 3), ("y", 5)]);
    let plan = StickyAssignor.assign(&members, &topics);
    check_balanced(&members, &plan);
    assert_eq!(parts(&plan, "a", "x"), [0]);
    assert_eq!(parts(&plan, "a", "y"), [0, 1]);
    assert_eq!(parts(&plan, "b", "x"), [1, 2]);
    assert_eq!(parts(&plan, "c", "y"), [2, 3, 4]);
}

#[test]
fn sticky_settles_double_claims_by_generation() {
    let topics = counts(&[("x", 4)]);
    let mut members = [member("a", &["x"], &[("x", 0), ("x", 1)]), member("b", &["x"], &[("x", 1), ("x", 2)])];
    // Equal (unknown) generations: the lower member id keeps x-1.
    let plan = StickyAssignor.assign(&members, &topics);
    assert_eq!((parts(&plan, "a", "x"), parts(&plan, "b", "x")), (vec![0, 1], vec![2, 3]));
    // "b" saw a newer generation, so its claim wins.
    members[0].subscription.generation_id = Some(3);
    members[1].subscription.generation_id = Some(4);
    let plan = StickyAssignor.assign(&members, &topics);
    assert_eq!((parts(&plan, "a", "x"), parts(&plan, "b", "x")), (vec![0, 3], vec![1, 2]));
}

#[test]
fn sticky_drops_stale_claims() {
    // x-7 is beyond the partition count, y is no longer subscribed.
    let members = [member("a", &["x"], &[("x", 7), ("y", 0)]), member("b", &["x", "y"], &[])];
    let topics = counts(&[("x", 2), ("y", 1)]);
    let plan = StickyAssignor.assign(&members, &topics);
    check_valid(&members, &topics, &plan);
    assert_eq!(parts(&plan, "b", "y"), [0]);
}

#[test]
fn sticky_ignores_member_order() {
    let members = vec![
        member("m2", &["x", "y"], &[("x", 1)]),
        member("m1", &["x"], &[("x", 1), ("x", 2)]),
        member("m3", &["y"], &[]),
    ];
    let topics = counts(&[("x", 5), ("y", 3)]);
    let mut reversed = members.clone();
    reversed.reverse();
    assert_eq!(StickyAssignor.assign(&members, &topics), StickyAssignor.assign(&reversed, &topics));
}

const TOPICS: [&str; 4] = ["t0", "t1", "t2", "t3"];

/// Partition counts for the known topics (t3 is unknown to the metadata).
fn partition_counts() -> impl Strategy<Value = BTreeMap<String, i32>> {
    proptest::collection::vec(0..9i32, 3)
        .prop_map(|ns| TOPICS.iter().zip(ns).map(|(t, n)| (t.to_string(), n)).collect())
}

/// Up to 7 members with random subscriptions, stale claims and generations.
fn members(same_topics: bool) -> impl Strategy<Value = Vec<MemberSubscription>> {
    let subscription = proptest::sample::subsequence(TOPICS.to_vec(), 1..=4);
    let claims = proptest::collection::vec((proptest::sample::select(TOPICS.to_vec()), 0..10i32), 0..6);
    let generation = proptest::option::of(0..3i32);
    (subscription.clone(), proptest::collection::vec((subscription, claims, generation), 1..8)).prop_map(
        move |(shared, ms)| {
            ms.into_iter()
                .enumerate()
                .map(|(i, (topics, claims, generation))| {
                    let topics = if same_topics { &shared } else { &topics };
                    let claims: Vec<_> = claims.iter().map(|(t, p)| (*t, *p)).collect();
                    let mut m = member(&format!("m{i}"), topics, &claims);
                    m.subscription.generation_id = generation;
                    m
                })
                .collect()
        },
    )
}

proptest! {
    #[test]
    fn range_assigns_every_partition_once(members in members(false), counts in partition_counts()) {
        check_valid(&members, &counts, &RangeAssignor.assign(&members, &counts));
    }

    #[test]
    fn sticky_is_valid_balanced_and_stable(members in members(false), counts in partition_counts()) {
        let plan = StickyAssignor.assign(&members, &counts);
        check_valid(&members, &counts, &plan);
        check_balanced(&members, &plan);
        // The next generation, with nothing changed, moves nothing.
        let again = StickyAssignor.assign(&with_owned(&members, &plan), &counts);
        prop_assert_eq!(again, plan);
    }

    #[test]
    fn sticky_leave_moves_only_the_leavers_partitions(
        members in members(true),
        counts in partition_counts(),
        leaver in any::<proptest::sample::Index>(),
    ) {
        let before = StickyAssignor.assign(&members, &counts);
        let mut next = with_owned(&members, &before);
        let gone = next.remove(leaver.index(next.len()));
        let after = StickyAssignor.assign(&next, &counts);
        check_valid(&next, &counts, &after);
        check_balanced(&next, &after);
        for m in &next {
            for tp in before[&m.member_id].topic_partitions() {
                prop_assert!(after[&m.member_id].contains(&tp), "{} lost {} when {} left", m.member_id, tp, gone.member_id);
            }
        }
    }

    #[test]
    fn sticky_join_moves_partitions_only_to_the_newcomer(
        members in members(true),
        counts in partition_counts(),
    ) {
        let before = StickyAssignor.assign(&members, &counts);
        let mut next = with_owned(&members, &before);
        let topics = next[0].subscription.topics.clone();
        next.push(MemberSubscription::new("new", topics));
        let after = StickyAssignor.assign(&next, &counts);
        check_valid(&next, &counts, &after);
        check_balanced(&next, &after);
        for m in &members {
            for tp in after[&m.member_id].topic_partitions() {
                prop_assert!(before[&m.member_id].contains(&tp), "{} gained {} when a member joined", m.member_id, tp);
            }
        }
    }
}
