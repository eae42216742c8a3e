//! Unit tests of `in_flight`.

use super::*;

fn request(context_id: u32) -> Waiter<&'static str> {
    Waiter {
        context_id,
        grant: "x-user-id: u",
        origin: None,
    }
}

fn leads(joined: Option<Waiter<&'static str>>) -> bool {
    joined.is_some()
}

const A: Digest = [1; 32];
const B: Digest = [2; 32];

#[test]
fn the_first_request_leads_and_the_rest_follow() {
    let mut in_flight = InFlight::default();
    assert!(leads(in_flight.join(A, request(10))));
    assert!(!leads(in_flight.join(A, request(11))));
    assert!(leads(in_flight.join(B, request(12))));
    assert!(!leads(in_flight.join(A, request(13))));
    let waiters = in_flight.finish(&A);
    assert_eq!(
        waiters.iter().map(|w| w.context_id).collect::<Vec<_>>(),
        vec![11, 13]
    );
    assert_eq!(in_flight.len(), 1, "B is still out");
    assert!(leads(in_flight.join(A, request(14))), "a new flight");
}

#[test]
fn a_waiter_that_leaves_is_not_woken() {
    let mut in_flight = InFlight::default();
    in_flight.join(A, request(10));
    in_flight.join(A, request(11));
    in_flight.join(A, request(12));
    in_flight.leave(&A, 11);
    let waiters = in_flight.finish(&A);
    assert_eq!(waiters.len(), 1);
    assert_eq!(waiters[0].context_id, 12);
}

#[test]
fn a_request_without_a_leader_starts_an_orphaned_flight() {
    let mut in_flight = InFlight::default();
    in_flight.join_or_orphan(A, request(10));
    assert!(in_flight.has_orphans());
    in_flight.join_or_orphan(A, request(11));
    assert_eq!(in_flight.adopt_orphans(1), vec![A]);
    assert_eq!(in_flight.finish(&A).len(), 2);
}

#[test]
fn an_abandoned_flight_with_waiters_is_adopted_by_the_root() {
    let mut in_flight = InFlight::default();
    in_flight.join(A, request(10));
    assert!(
        !in_flight.abandon(&A, 10),
        "no waiters: the flight just ends"
    );
    assert!(in_flight.is_empty());

    in_flight.join(A, request(10));
    in_flight.join(A, request(11));
    assert!(!in_flight.abandon(&A, 11), "only the leader abandons");
    assert!(in_flight.abandon(&A, 10));
    assert!(in_flight.has_orphans());
    assert!(!leads(in_flight.join(A, request(12))));
    assert_eq!(in_flight.adopt_orphans(1), vec![A]);
    assert!(!in_flight.has_orphans());
    assert_eq!(in_flight.adopt_orphans(1), Vec::<Digest>::new());
    assert_eq!(in_flight.finish(&A).len(), 2);
}
