//! Revocation checks in flight on this worker, by token digest: while one request's callout for a
//! key is out, further requests for that key wait for its answer instead of dispatching their own.

use std::collections::HashMap;

use crate::revocation::protocol::Digest;

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

/// A request waiting on a callout, with what it applies once allowed (`G`: the gate's grant)
/// and the `Origin` its denial must answer (for CORS).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiter<G> {
    pub context_id: u32,
    pub grant: G,
    pub origin: Option<String>,
}

#[derive(Debug)]
struct Flight<G> {
    leader: Leader,
    waiters: Vec<Waiter<G>>,
}

#[derive(Debug)]
pub struct InFlight<G> {
    flights: HashMap<Digest, Flight<G>>,
}

impl<G> Default for InFlight<G> {
    fn default() -> Self {
        Self {
            flights: HashMap::new(),
        }
    }
}

impl<G> InFlight<G> {
    /// Joins the flight already out for `digest` (`None`: the request now waits), or starts one
    /// led by the request, which gets itself back to dispatch the callout.
    pub fn join(&mut self, digest: Digest, request: Waiter<G>) -> Option<Waiter<G>> {
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
    pub fn join_or_orphan(&mut self, digest: Digest, request: Waiter<G>) {
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
    pub fn finish(&mut self, digest: &Digest) -> Vec<Waiter<G>> {
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
#[path = "in_flight_tests.rs"]
mod tests;
