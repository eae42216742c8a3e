//! Revocation checks in flight on this worker, by token digest: while one request's callout for a
//! key is out, further requests for that key wait for its answer instead of dispatching their own.

use std::collections::HashMap;

use crate::decision::Grant;
use crate::revocation::Digest;

/// Who dispatched the callout a flight waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// An HTTP context: its own request waits on the answer too.
    Request(u32),
    /// The leading request went away before the answer; the root context must dispatch anew.
    Orphaned,
    /// The root context dispatched it for the waiters.
    Root(u32),
}

/// A request waiting on a callout, with what it applies once allowed and the `Origin` its
/// denial must answer (for CORS).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiter {
    pub context_id: u32,
    pub grant: Grant,
    pub origin: Option<String>,
}

#[derive(Debug)]
struct Flight {
    leader: Leader,
    waiters: Vec<Waiter>,
}

#[derive(Debug, Default)]
pub struct InFlight {
    flights: HashMap<Digest, Flight>,
}

impl InFlight {
    /// Joins the flight already out for `digest` (`None`: the request now waits), or starts one
    /// led by the request, which gets itself back to dispatch the callout.
    pub fn join(&mut self, digest: Digest, request: Waiter) -> Option<Waiter> {
        match self.flights.get_mut(&digest) {
            Some(flight) => {
                flight.waiters.push(request);
                None
            }
            None => {
                self.flights.insert(
                    digest,
                    Flight {
                        leader: Leader::Request(request.context_id),
                        waiters: Vec::new(),
                    },
                );
                Some(request)
            }
        }
    }

    /// Joins the flight for `digest`, or starts one for the root context to dispatch (a request
    /// woken outside its own callbacks cannot dispatch a callout of its own).
    pub fn join_or_orphan(&mut self, digest: Digest, request: Waiter) {
        match self.flights.get_mut(&digest) {
            Some(flight) => flight.waiters.push(request),
            None => {
                self.flights.insert(
                    digest,
                    Flight {
                        leader: Leader::Orphaned,
                        waiters: vec![request],
                    },
                );
            }
        }
    }

    /// The leading request could not dispatch or lost its callout: it leaves the flight, which
    /// ends; its waiters are returned to be decided like the leader.
    pub fn finish(&mut self, digest: &Digest) -> Vec<Waiter> {
        self.flights
            .remove(digest)
            .map(|flight| flight.waiters)
            .unwrap_or_default()
    }

    /// The leading request is gone (its stream ended) before the answer. Envoy cancels its
    /// callout, so waiters, if any, are handed to the root context.
    pub fn abandon(&mut self, digest: &Digest, context_id: u32) -> bool {
        let Some(flight) = self.flights.get_mut(digest) else {
            return false;
        };
        if flight.leader != Leader::Request(context_id) {
            return false;
        }
        if flight.waiters.is_empty() {
            self.flights.remove(digest);
            false
        } else {
            flight.leader = Leader::Orphaned;
            true
        }
    }

    /// A waiting request is gone: it is no longer woken.
    pub fn leave(&mut self, digest: &Digest, context_id: u32) {
        if let Some(flight) = self.flights.get_mut(digest) {
            flight
                .waiters
                .retain(|waiter| waiter.context_id != context_id);
        }
    }

    /// The orphaned flights, now led by the root context `root_id`, for it to dispatch.
    pub fn adopt_orphans(&mut self, root_id: u32) -> Vec<Digest> {
        let mut adopted = Vec::new();
        for (digest, flight) in &mut self.flights {
            if flight.leader == Leader::Orphaned {
                flight.leader = Leader::Root(root_id);
                adopted.push(*digest);
            }
        }
        adopted
    }

    pub fn has_orphans(&self) -> bool {
        self.flights
            .values()
            .any(|flight| flight.leader == Leader::Orphaned)
    }

    pub fn len(&self) -> usize {
        self.flights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flights.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn request(context_id: u32) -> Waiter {
        Waiter {
            context_id,
            grant: Grant {
                identity: Arc::from([("x-user-id".into(), Some("u".into()))]),
                stripped: vec![],
            },
            origin: None,
        }
    }

    fn leads(joined: Option<Waiter>) -> bool {
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
}
