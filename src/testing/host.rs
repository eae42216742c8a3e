//! A recording double of the host for the flow tests: one host for several contexts, what each
//! did recorded under its id.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use crate::gate::response::LocalReply;
use crate::proxy::host::{Callout, Host};
use crate::revocation::cache::{SharedData, SharedSetError};

/// One host for several contexts: what each context did is recorded under its id.
#[derive(Default)]
pub struct FakeHost {
    pub headers: RefCell<HashMap<u32, HashMap<String, Vec<u8>>>>,
    pub current: RefCell<u32>,
    pub dispatch_fails: bool,
    pub next_call: RefCell<u32>,
    pub set_headers: RefCell<Vec<(u32, String, Option<String>)>>,
    pub callouts: RefCell<Vec<(String, String, String, Duration)>>,
    pub replies: RefCell<Vec<(u32, LocalReply)>>,
    pub resumed: RefCell<Vec<u32>>,
    pub gone: RefCell<Vec<u32>>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub counters: RefCell<HashMap<u32, u64>>,
    pub histogram: RefCell<Vec<u64>>,
    /// What the route's metadata selects, for every request.
    pub route_requirement: RefCell<Option<Vec<u8>>>,
    pub filter_state: RefCell<Vec<(u32, String, String)>>,
    /// `POST`s dispatched: (path, body).
    pub posts: RefCell<Vec<(String, Vec<u8>)>>,
    /// Shared queues by id (1-based), with their names.
    pub queues: RefCell<Vec<(String, std::collections::VecDeque<Vec<u8>>)>>,
}

impl FakeHost {
    pub fn request(&self, context_id: u32, headers: &[(&str, &[u8])]) {
        self.headers.borrow_mut().insert(
            context_id,
            headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
        );
        *self.current.borrow_mut() = context_id;
    }

    pub fn replies_to(&self, context_id: u32) -> Vec<LocalReply> {
        self.replies
            .borrow()
            .iter()
            .filter(|(id, _)| *id == context_id)
            .map(|(_, reply)| reply.clone())
            .collect()
    }

    pub fn headers_set_on(&self, context_id: u32) -> Vec<(String, Option<String>)> {
        self.set_headers
            .borrow()
            .iter()
            .filter(|(id, _, _)| *id == context_id)
            .map(|(_, name, value)| (name.clone(), value.clone()))
            .collect()
    }

    pub fn counter(&self, metric: Option<u32>) -> u64 {
        self.counters
            .borrow()
            .get(&metric.unwrap())
            .copied()
            .unwrap_or(0)
    }
}

impl SharedData for FakeHost {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        // As Envoy: a `cas` is checked against an existing key only; a new key is stored.
        if let (Some(cas), Some(current)) = (cas.filter(|&c| c != 0), current)
            && cas != current
        {
            return Err(SharedSetError::CasMismatch);
        }
        shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

impl Host for FakeHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        let current = *self.current.borrow();
        self.headers.borrow().get(&current)?.get(name).cloned()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.set_headers.borrow_mut().push((
            *self.current.borrow(),
            name.to_owned(),
            value.map(str::to_owned),
        ));
    }

    fn dispatch_get(&self, callout: &Callout<'_>) -> Result<u32, String> {
        if self.dispatch_fails {
            return Err("BadArgument".to_owned());
        }
        self.callouts.borrow_mut().push((
            callout.cluster.to_owned(),
            callout.authority.to_owned(),
            callout.path.to_owned(),
            callout.timeout,
        ));
        *self.next_call.borrow_mut() += 1;
        Ok(*self.next_call.borrow())
    }

    fn dispatch_post(&self, callout: &Callout<'_>, body: &[u8]) -> Result<u32, String> {
        if self.dispatch_fails {
            return Err("BadArgument".to_owned());
        }
        self.posts
            .borrow_mut()
            .push((callout.path.to_owned(), body.to_vec()));
        *self.next_call.borrow_mut() += 1;
        Ok(*self.next_call.borrow())
    }

    fn queue(&self, name: &str) -> Option<u32> {
        let mut queues = self.queues.borrow_mut();
        let index = match queues.iter().position(|(n, _)| n == name) {
            Some(index) => index,
            None => {
                queues.push((name.to_owned(), Default::default()));
                queues.len() - 1
            }
        };
        Some(index as u32 + 1)
    }

    fn enqueue(&self, queue: u32, message: &[u8]) -> bool {
        match self.queues.borrow_mut().get_mut(queue as usize - 1) {
            Some((_, messages)) => {
                messages.push_back(message.to_vec());
                true
            }
            None => false,
        }
    }

    fn dequeue(&self, queue: u32) -> Option<Vec<u8>> {
        self.queues
            .borrow_mut()
            .get_mut(queue as usize - 1)?
            .1
            .pop_front()
    }

    fn send_reply(&self, reply: &LocalReply) {
        self.replies
            .borrow_mut()
            .push((*self.current.borrow(), reply.clone()));
    }

    fn resume_request(&self) {
        self.resumed.borrow_mut().push(*self.current.borrow());
    }

    fn switch_context(&self, context_id: u32) -> bool {
        if self.gone.borrow().contains(&context_id) {
            return false;
        }
        *self.current.borrow_mut() = context_id;
        true
    }

    fn increment(&self, metric: Option<u32>) {
        if let Some(metric) = metric {
            *self.counters.borrow_mut().entry(metric).or_default() += 1;
        }
    }

    fn record(&self, metric: Option<u32>, value: u64) {
        if metric.is_some() {
            self.histogram.borrow_mut().push(value);
        }
    }

    fn route_requirement(&self) -> Option<Vec<u8>> {
        self.route_requirement.borrow().clone()
    }

    fn set_filter_state(&self, name: &str, value: &str) {
        self.filter_state.borrow_mut().push((
            *self.current.borrow(),
            name.to_owned(),
            value.to_owned(),
        ));
    }
}
