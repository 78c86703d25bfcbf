//! Partition assignors: how the group leader splits the subscribed topics'
//! partitions among the members of a consumer group.
//!
//! The leader of a generation runs one assignor over every member's
//! [`Subscription`] and sends each member its [`Assignment`] through
//! SyncGroup. The broker picks the assignor (the first protocol in the
//! leader's list that every member supports), so a member offers
//! [`SUPPORTED`] in order of preference and the leader looks the chosen one
//! up with [`assignor_for`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use kfn_kafka::group::assignor::{assignor_for, MemberSubscription};
//!
//! let members = vec![
//!     MemberSubscription::new("a", vec!["orders".into()]),
//!     MemberSubscription::new("b", vec!["orders".into()]),
//! ];
//! let partitions = BTreeMap::from([("orders".to_string(), 3)]);
//! let plan = assignor_for("range").unwrap().assign(&members, &partitions);
//! assert_eq!(plan["a"].partitions["orders"], [0, 1]);
//! assert_eq!(plan["b"].partitions["orders"], [2]);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::protocol::{Assignment, Subscription, TopicPartition};

/// The assignors kfn offers in JoinGroup, most preferred first.
pub const SUPPORTED: &[&str] = &[StickyAssignor::NAME, RangeAssignor::NAME];

/// One member's subscription, as the leader sees it in JoinGroup's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id the broker gave the member.
    pub member_id: String,
    /// What the member sent as its protocol metadata.
    pub subscription: Subscription,
}

impl MemberSubscription {
    /// A member subscribing to `topics` and owning nothing.
    pub fn new(member_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self { member_id: member_id.into(), subscription: Subscription { topics, ..Subscription::default() } }
    }
}

/// A strategy for dividing partitions among group members.
pub trait Assignor: Send + Sync {
    /// The protocol name members announce in JoinGroup.
    fn name(&self) -> &'static str;

    /// Assigns every partition of every subscribed topic to one member that
    /// subscribes to it. `partitions_per_topic` holds the partition count of
    /// each topic the metadata knows; subscribed topics missing from it are
    /// left out. The result has an entry, possibly empty, for every member
    /// (the first of any duplicated member id), and is the same for the
    /// same input.
    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment>;
}

/// The assignor behind a protocol name, if kfn has it.
pub fn assignor_for(name: &str) -> Option<Box<dyn Assignor>> {
    match name {
        StickyAssignor::NAME => Some(Box::new(StickyAssignor)),
        RangeAssignor::NAME => Some(Box::new(RangeAssignor)),
        _ => None,
    }
}

/// Kafka's range assignor: per topic, the subscribed members in member-id
/// order take contiguous ranges, and the first ones one partition more when
/// the count does not divide evenly. Compatible with the Java client's and
/// librdkafka's `range`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl RangeAssignor {
    /// The protocol name.
    pub const NAME: &'static str = "range";
}

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let group = Group::new(members, partitions_per_topic);
        let mut plan: BTreeMap<&str, Vec<TopicPartition>> = group.members.keys().map(|id| (*id, Vec::new())).collect();
        for (topic, subscribers) in &group.subscribers {
            let count = group.partition_count(topic);
            let per_member = count / subscribers.len();
            let extra = count % subscribers.len();
            let mut next = 0;
            for (i, member) in subscribers.iter().enumerate() {
                let take = per_member + usize::from(i < extra);
                let owned = plan.entry(member).or_default();
                owned.extend((next..next + take).map(|p| TopicPartition::new(*topic, p as i32)));
                next += take;
            }
        }
        plan.into_iter().map(|(id, tps)| (id.to_owned(), Assignment::from_partitions(tps))).collect()
    }
}

/// A balanced assignor that keeps partitions where they are (eager
/// protocol: members give up everything at a rebalance, and the leader
/// gives back what it can).
///
/// Balanced means no partition could move from one member to another that
/// subscribes to its topic and holds at least two partitions fewer; among
/// members with the same subscription, counts differ by at most one.
/// Within that, each partition stays with the member that owned it (the
/// `owned` partitions of its subscription): when a member leaves only its
/// partitions move, and when one joins only as many move to it as balance
/// needs. Owned partitions of topics no longer subscribed, or beyond the
/// topic's partition count, are dropped; a partition claimed by two
/// members stays with the one that reports the newer generation (the
/// lower member id on a tie).
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

impl StickyAssignor {
    /// The protocol name.
    pub const NAME: &'static str = "sticky";
}

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let group = Group::new(members, partitions_per_topic);
        let mut plan = StickyPlan::keep_owned(&group);
        plan.place_unowned(&group);
        plan.balance(&group);
        plan.assigned
            .into_iter()
            .map(|(id, tps)| {
                let tps = tps.into_iter().map(|(t, p)| TopicPartition::new(t, p));
                (id.to_owned(), Assignment::from_partitions(tps))
            })
            .collect()
    }
}

/// A partition, borrowing its topic name from the assignor's input.
type Partition<'a> = (&'a str, i32);

/// The input of an assignment, indexed: members by id and, per known
/// topic, who subscribes.
struct Group<'a> {
    /// Each member's subscription and the known topics among its topics.
    members: BTreeMap<&'a str, (&'a Subscription, BTreeSet<&'a str>)>,
    /// Per known topic with at least one subscriber, the subscribers in id
    /// order.
    subscribers: BTreeMap<&'a str, Vec<&'a str>>,
    partitions_per_topic: &'a BTreeMap<String, i32>,
}

impl<'a> Group<'a> {
    fn new(members: &'a [MemberSubscription], partitions_per_topic: &'a BTreeMap<String, i32>) -> Self {
        let mut by_id = BTreeMap::new();
        for m in members {
            by_id.entry(m.member_id.as_str()).or_insert_with(|| {
                // Keyed by the metadata's own string, so partitions can
                // borrow one name whichever member mentioned the topic.
                let known = m
                    .subscription
                    .topics
                    .iter()
                    .filter_map(|t| partitions_per_topic.get_key_value(t))
                    .map(|(t, _)| t.as_str())
                    .collect::<BTreeSet<_>>();
                (&m.subscription, known)
            });
        }
        let mut subscribers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (id, (_, topics)) in &by_id {
            for topic in topics {
                subscribers.entry(*topic).or_default().push(*id);
            }
        }
        Self { members: by_id, subscribers, partitions_per_topic }
    }

    /// The partition count of a known topic; a negative count (which no
    /// broker reports) counts as none.
    fn partition_count(&self, topic: &str) -> usize {
        self.partitions_per_topic.get(topic).and_then(|n| usize::try_from(*n).ok()).unwrap_or(0)
    }

    fn subscribes(&self, member: &str, topic: &str) -> bool {
        self.members.get(member).is_some_and(|(_, topics)| topics.contains(topic))
    }
}

/// The sticky assignor's working state.
struct StickyPlan<'a> {
    /// The partitions given to each member so far.
    assigned: BTreeMap<&'a str, BTreeSet<Partition<'a>>>,
    /// Who owned each partition before, after settling double claims.
    previous: BTreeMap<Partition<'a>, &'a str>,
}

impl<'a> StickyPlan<'a> {
    /// Starts from every valid claim, one owner per partition.
    fn keep_owned(group: &Group<'a>) -> Self {
        // Partition -> (generation, member) of the claim kept so far.
        let mut claims: BTreeMap<Partition<'a>, (Option<i32>, &'a str)> = BTreeMap::new();
        for (id, (subscription, topics)) in &group.members {
            for tp in &subscription.owned {
                let Some(topic) = topics.get(tp.topic.as_str()).copied() else {
                    continue;
                };
                let in_range = usize::try_from(tp.partition).is_ok_and(|p| p < group.partition_count(topic));
                if !in_range {
                    continue;
                }
                let claim = (subscription.generation_id, *id);
                match claims.get(&(topic, tp.partition)) {
                    // Members are visited in id order, so on equal
                    // generations the lower id keeps its claim.
                    Some((generation, kept)) if *generation >= claim.0 => {
                        if kept != id {
                            tracing::debug!(
                                topic,
                                partition = tp.partition,
                                kept = *kept,
                                dropped = *id,
                                "partition claimed by two members"
                            );
                        }
                    }
                    _ => {
                        claims.insert((topic, tp.partition), claim);
                    }
                }
            }
        }
        let mut assigned: BTreeMap<&str, BTreeSet<Partition>> =
            group.members.keys().map(|id| (*id, BTreeSet::new())).collect();
        let previous: BTreeMap<Partition, &str> = claims.into_iter().map(|(tp, (_, id))| (tp, id)).collect();
        for (tp, id) in &previous {
            assigned.entry(id).or_default().insert(*tp);
        }
        Self { assigned, previous }
    }

    /// Gives each partition nobody kept to the least loaded member that
    /// subscribes to it, the most constrained partitions first.
    fn place_unowned(&mut self, group: &Group<'a>) {
        let mut unowned: Vec<(usize, Partition<'a>)> = Vec::new();
        for (topic, subscribers) in &group.subscribers {
            for p in 0..group.partition_count(topic) {
                let tp = (*topic, p as i32);
                if !self.previous.contains_key(&tp) {
                    unowned.push((subscribers.len(), tp));
                }
            }
        }
        unowned.sort_unstable();
        for (_, tp) in unowned {
            let target = group
                .subscribers
                .get(tp.0)
                .and_then(|subs| subs.iter().min_by_key(|id| (self.count(id), **id)).copied());
            if let Some(id) = target {
                self.assigned.entry(id).or_default().insert(tp);
            }
        }
    }

    /// Moves one partition at a time from a member to one with at least two
    /// fewer that subscribes to its topic, until no such move is left. Each
    /// move lowers the sum of squared counts, so this ends.
    fn balance(&mut self, group: &Group<'a>) {
        loop {
            let mut by_load: Vec<(usize, &'a str)> = self.assigned.iter().map(|(id, tps)| (tps.len(), *id)).collect();
            by_load.sort_unstable();
            let found = by_load.iter().find_map(|&(low, to)| {
                by_load
                    .iter()
                    .rev()
                    .take_while(|&&(high, _)| high >= low + 2)
                    .find_map(|&(_, from)| self.pick(group, from, to).map(|tp| (from, to, tp)))
            });
            let Some((from, to, tp)) = found else {
                return;
            };
            if let Some(tps) = self.assigned.get_mut(from) {
                tps.remove(&tp);
            }
            self.assigned.entry(to).or_default().insert(tp);
        }
    }

    /// The partition of `from` that moving to `to` disturbs least: one
    /// `from` was only given in this round, else the first it owned.
    fn pick(&self, group: &Group<'a>, from: &str, to: &str) -> Option<Partition<'a>> {
        self.assigned
            .get(from)?
            .iter()
            .filter(|tp| group.subscribes(to, tp.0))
            .min_by_key(|tp| (self.previous.get(*tp) == Some(&from), **tp))
            .copied()
    }

    fn count(&self, member: &str) -> usize {
        self.assigned.get(member).map_or(0, BTreeSet::len)
    }
}
