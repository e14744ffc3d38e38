//! The loop's fan-out tables: memberships, sweeps in slices, a member of two groups caught up
//! in the loop's order, the in-flight bound and the outbox.

use std::sync::atomic::Ordering::Relaxed;

use super::*;

const RULES: Rules = Rules {
    policy: SlowConsumer::Drop,
    max_pending: None,
};

#[test]
fn members_join_once_and_leave_with_their_connection() {
    let (a, b) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let mut t = LoopGroups::default();
    assert!(t.join(1, RULES, &a, (5, 50), false));
    assert!(!t.join(1, RULES, &a, (5, 50), false), "already a member");
    assert!(t.join(2, RULES, &b, (5, 50), false));
    assert!(t.join(1, RULES, &a, (6, 60), false));
    assert_eq!(a.members.load(Relaxed), 2);
    assert_eq!(t.count_of((5, 50)), 2);
    assert_eq!(
        t.count_of((5, 51)),
        0,
        "another connection in the same slot"
    );
    let mut m: Vec<(u32, u32)> = t.groups[&1]
        .members
        .iter()
        .map(|(_, m)| (m.key, m.generation))
        .collect();
    m.sort_unstable();
    assert_eq!(m, [(5, 50), (6, 60)]);
    assert!(!t.leave(1, (5, 51)), "a stale generation leaves nothing");
    assert!(t.leave(1, (5, 50)));
    assert_eq!(a.members.load(Relaxed), 1);
    assert_eq!(t.leave_all((5, 50)), 1, "group 2 is left");
    assert!(
        !t.has_members(2),
        "a group without members here is forgotten"
    );
    assert_eq!(b.members.load(Relaxed), 0);
    assert_eq!(t.leave_all((6, 60)), 1);
    assert!(t.memberships.is_empty() && t.groups.is_empty());
}

#[test]
fn a_counted_join_is_not_counted_twice() {
    let c = Arc::new(Counters::default());
    let mut t = LoopGroups::default();
    c.members.fetch_add(1, Relaxed); // taken by the poster
    assert!(t.join(1, RULES, &c, (1, 1), true));
    assert_eq!(c.members.load(Relaxed), 1);
    c.members.fetch_add(1, Relaxed);
    assert!(!t.join(1, RULES, &c, (1, 1), true), "a member already");
    assert_eq!(
        c.members.load(Relaxed),
        1,
        "the poster's count is given back"
    );
}

#[test]
fn in_flight_is_bounded() {
    let c = Counters::default();
    assert!(c.reserve(60, 100));
    assert!(!c.reserve(41, 100));
    assert!(c.reserve(40, 100));
    c.release(60);
    assert_eq!(c.in_flight.load(Relaxed), 40);
    c.release(40);
    assert!(c.reserve(500, 100), "alone in flight, any message fits");
    assert!(!c.reserve(1, 100));
}

fn payload(n: u8) -> Arc<[u8]> {
    Arc::from(&[n][..])
}

#[test]
fn a_sweep_visits_those_owed_a_slice_at_a_time_and_ends_when_all_have_all() {
    let c = Arc::new(Counters::default());
    let mut t = LoopGroups::default();
    for key in 0..5 {
        t.join(1, RULES, &c, (key, 100 + key), false);
    }
    assert!(
        t.append(2, payload(0), None).is_none(),
        "no members: nothing logged"
    );
    assert_eq!(t.append(1, payload(1), None), Some(in_flight_cost(1)));
    assert!(t.sweeping() && t.is_sweeping(1));
    t.join(1, RULES, &c, (9, 109), false); // joins mid-sweep: owed nothing logged before
    let mut visits = Vec::new();
    assert!(t.next_slice(1, 3, &mut visits));
    let keys: Vec<u32> = visits.iter().map(|v| v.key).collect();
    assert_eq!(keys, [0, 1, 2], "a slice of three");
    assert!(visits.iter().all(|v| v.from == Some(0)));
    t.end_slice(1);
    t.append(1, payload(2), None); // published during the pass
    visits.clear();
    assert!(t.next_slice(1, 3, &mut visits));
    let keys: Vec<u32> = visits.iter().map(|v| v.key).collect();
    assert_eq!(
        keys,
        [3, 4, 9],
        "the rest, and the late joiner for the new entry"
    );
    assert_eq!(visits[2].from, Some(1), "it is owed the second entry only");
    t.end_slice(1);
    assert!(
        t.is_sweeping(1),
        "the first three are owed the second entry"
    );
    visits.clear();
    assert!(t.next_slice(1, 10, &mut visits));
    assert_eq!(visits.iter().map(|v| v.key).collect::<Vec<_>>(), [0, 1, 2]);
    t.end_slice(1);
    assert!(!t.sweeping(), "everyone has everything: the sweep ended");
    assert!(t.groups[&1].log.entries().is_empty());
}

#[test]
fn a_member_of_two_groups_is_caught_up_in_the_loops_order() {
    let c = Arc::new(Counters::default());
    let mut t = LoopGroups::default();
    t.join(1, RULES, &c, (7, 70), false);
    t.join(2, RULES, &c, (7, 70), false);
    t.join(2, RULES, &c, (8, 80), false);
    for (group, n) in [(1, 0), (2, 1), (2, 2), (1, 3)] {
        t.append(group, payload(n), None);
    }
    let mut visits = Vec::new();
    t.next_slice(2, 64, &mut visits);
    assert_eq!(visits.len(), 2);
    assert_eq!(
        visits[0].from, None,
        "a member of two groups is caught up in both"
    );
    assert_eq!(visits[1].from, Some(0));
    let mut runs = Vec::new();
    t.catch_up((7, 70), &mut runs);
    let order: Vec<u8> = runs
        .iter()
        .flat_map(|r| {
            let log = t.groups[&r.group].log.entries();
            log[r.from..r.to]
                .iter()
                .map(|e| e.payload[0])
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(order, [0, 1, 2, 3]);
    runs.clear();
    t.catch_up((7, 70), &mut runs);
    assert!(runs.is_empty(), "nothing is owed twice");
    assert!(t.leave_all((7, 70)) == 2 && t.leave_all((8, 80)) == 1);
    assert!(
        !t.sweeping(),
        "a group that empties takes its sweep with it"
    );
}

#[test]
fn the_outbox_keeps_order_and_packs_bytes() {
    let mut t = LoopGroups::default();
    assert!(!t.has_outgoing());
    t.push_write((1, 1), b"ab");
    t.push_broadcast(7, Arc::from(&b"x"[..]), None);
    t.push_write((2, 2), b"cde");
    let out = t.take_outgoing();
    assert!(!t.has_outgoing());
    assert_eq!(out.bytes, b"abcde");
    assert!(matches!(
        out.entries[2],
        Outgoing::WriteTo {
            key: 2,
            start: 2,
            end: 5,
            ..
        }
    ));
    t.recycle(out);
    assert!(t.outbox.entries.capacity() >= 3, "the allocation is kept");
}
