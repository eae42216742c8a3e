//! Reporting usage to keyservice, from the root context's tick, host-free.
//!
//! Every worker counts its requests in its own table (no host call on the request path) and,
//! once a second, hands the table to the Envoy's reporter as one message on a shared queue. One
//! worker per Envoy reports: the one holding the shared lease (the feed's mechanism). It takes
//! the messages off the queue into its pending table and every `report_every_seconds` sends up
//! to 1000 (key, day) entries as one `POST` (`dispatch_http_call`), more at once when more wait.
//! A failed report is retried with the same batch id (keyservice applies a batch once), backing
//! off 1 s doubling to 30 s; meanwhile counts pile up to `max_keys` entries, and what does not fit
//! is dropped and counted (the `usage_dropped` gauge, and `dropped` in the next report). Requests
//! never wait for any of it.

use std::time::Duration;

use log::warn;

use crate::gate::decision::Gate;
use crate::metering::report::{MAX_REPORT_KEYS, batch_id, report_body};
use crate::metering::usage::{DayCounts, UsageTable};
use crate::proxy::host::{Callout, Host};
use crate::revocation::feed_state::hold_lease;

const QUEUE: &str = "keygate.usage";
const LEASE_KEY: &str = "keygate.usage.lease";
/// How often a worker hands its counts over, and checks the lease.
const HAND_OVER_MS: u64 = 1_000;
/// Queue messages the reporter takes per tick (each one worker's second of counts).
const MAX_MESSAGES_PER_TICK: usize = 64;
const MIN_BACKOFF_MS: u64 = 1_000;
const MAX_BACKOFF_MS: u64 = 30_000;

/// One worker's part in reporting usage.
#[derive(Debug)]
pub struct UsageReporter {
    /// This worker's name in the lease.
    owner: u64,
    queue: Option<u32>,
    leading: bool,
    handed_over_ms: Option<u64>,
    /// What the reporter has taken off the queue and not yet sent.
    pending: UsageTable,
    /// A report out, waiting for its answer.
    out: Option<Report>,
    /// A report whose answer was not a success: sent again as is.
    retry: Option<Report>,
    next_report_ms: u64,
    backoff_ms: u64,
    /// Requests dropped since start, for the gauge.
    dropped_total: u64,
}

#[derive(Debug, Clone)]
struct Report {
    call_id: u32,
    batch: String,
    entries: Vec<DayCounts>,
    dropped: u64,
    sent_ms: u64,
}

impl UsageReporter {
    pub fn new(owner: u64, max_keys: usize) -> Self {
        Self {
            owner,
            queue: None,
            leading: false,
            handed_over_ms: None,
            pending: UsageTable::new(max_keys),
            out: None,
            retry: None,
            next_report_ms: 0,
            backoff_ms: 0,
            dropped_total: 0,
        }
    }

    /// The tick: hand this worker's counts over; if it leads, take the queue's messages and send
    /// a report when one is due. Returns the id of a report it dispatched.
    pub fn on_tick(&mut self, gate: &Gate, host: &dyn Host, now_ms: u64) -> Option<u32> {
        let (config, usage) = (gate.config.usage.as_ref()?, gate.usage.as_ref()?);
        let due = self
            .handed_over_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= HAND_OVER_MS);
        if due {
            self.handed_over_ms = Some(now_ms);
            let message = usage.borrow_mut().drain();
            if let Some(message) = message {
                self.hand_over(host, &message);
            }
            let leading = hold_lease(host, LEASE_KEY, self.owner, now_ms);
            if leading && !self.leading {
                // A new reporter gathers a full interval of the workers' counts first.
                self.next_report_ms = now_ms + config.report_every_ms;
            }
            self.leading = leading;
        }
        if !self.leading {
            // A reporter that lost the lease passes on what it held.
            if let Some(report) = self.retry.take() {
                self.pending.restore(&report.entries, report.dropped);
            }
            if let Some(message) = self.pending.drain() {
                self.hand_over(host, &message);
            }
            return None;
        }
        let queue = self.queue(host)?;
        let dropped_before = self.pending.dropped();
        for _ in 0..MAX_MESSAGES_PER_TICK {
            let Some(message) = host.dequeue(queue) else {
                break;
            };
            self.pending.absorb(&message);
        }
        self.add_dropped(gate, host, self.pending.dropped().saturating_sub(dropped_before));
        // A report whose answer never came (its callout was lost) is retried.
        let bound_ms = config.timeout_ms + 5_000;
        if let Some(report) = self
            .out
            .take_if(|report| now_ms.saturating_sub(report.sent_ms) > bound_ms)
        {
            self.retry = Some(report);
        }
        if self.out.is_some() || now_ms < self.next_report_ms {
            return None;
        }
        let report = match self.retry.take() {
            Some(report) => report,
            None => {
                let (entries, dropped) = self.pending.take(MAX_REPORT_KEYS);
                if entries.is_empty() && dropped == 0 {
                    self.next_report_ms = now_ms + config.report_every_ms;
                    return None;
                }
                Report {
                    call_id: 0,
                    batch: new_batch_id(self.owner, now_ms),
                    entries,
                    dropped,
                    sent_ms: now_ms,
                }
            }
        };
        let body = report_body(&report.batch, report.dropped, &report.entries);
        let callout = Callout {
            cluster: &config.cluster,
            authority: &config.authority,
            path: &config.path,
            timeout: Duration::from_millis(config.timeout_ms),
        };
        match host.dispatch_post(&callout, &body) {
            Ok(call_id) => {
                self.out = Some(Report {
                    call_id,
                    sent_ms: now_ms,
                    ..report
                });
                Some(call_id)
            }
            Err(problem) => {
                warn!(
                    "usage report could not be dispatched to cluster {:?}: {problem}",
                    config.cluster
                );
                self.retry = Some(report);
                self.failed(gate, host, now_ms);
                None
            }
        }
    }

    /// keyservice answered a report (`status` `None`: no answer).
    pub fn on_answer(&mut self, gate: &Gate, host: &dyn Host, call_id: u32, status: Option<u16>, now_ms: u64) {
        let Some(report) = self.out.take_if(|report| report.call_id == call_id) else {
            return;
        };
        let Some(config) = gate.config.usage.as_ref() else {
            return;
        };
        match status {
            Some(200..=299) => {
                host.increment(gate.metrics.usage_reports_ok);
                self.backoff_ms = 0;
                // The report was full and more wait: send the next at once.
                self.next_report_ms = if report.entries.len() == MAX_REPORT_KEYS
                    && !self.pending.is_empty()
                {
                    now_ms
                } else {
                    now_ms + config.report_every_ms
                };
            }
            // The report itself is refused: sending it again would not help.
            Some(status @ 400..=499) if status != 408 && status != 429 => {
                warn!(
                    "usage report refused by keyservice ({status}); its {} entries are dropped",
                    report.entries.len()
                );
                let requests = report.entries.iter().map(|e| e.counts.requests()).sum();
                self.add_dropped(gate, host, requests);
                self.failed(gate, host, now_ms);
            }
            _ => {
                warn!("usage report failed (status {status:?}); retrying");
                self.retry = Some(report);
                self.failed(gate, host, now_ms);
            }
        }
    }

    fn failed(&mut self, gate: &Gate, host: &dyn Host, now_ms: u64) {
        host.increment(gate.metrics.usage_reports_error);
        self.backoff_ms = (self.backoff_ms * 2).clamp(MIN_BACKOFF_MS, MAX_BACKOFF_MS);
        self.next_report_ms = now_ms.saturating_add(self.backoff_ms);
    }

    /// Requests whose counts were lost (a table was full, or keyservice refused a report), for
    /// the gauge: the total since this worker began reporting.
    fn add_dropped(&mut self, gate: &Gate, host: &dyn Host, requests: u64) {
        if requests > 0 {
            self.dropped_total = self.dropped_total.saturating_add(requests);
            host.record(gate.metrics.usage_dropped, self.dropped_total);
        }
    }

    fn queue(&mut self, host: &dyn Host) -> Option<u32> {
        if self.queue.is_none() {
            self.queue = host.queue(QUEUE);
        }
        self.queue
    }

    /// Puts a message on the queue; if the host will not take it, the counts stay here.
    fn hand_over(&mut self, host: &dyn Host, message: &[u8]) {
        match self.queue(host) {
            Some(queue) if host.enqueue(queue, message) => {}
            _ => {
                self.pending.absorb(message);
            }
        }
    }
}

/// A fresh batch id: random, or (without randomness) from the reporter's name and the time.
fn new_batch_id(owner: u64, now_ms: u64) -> String {
    let mut random = [0u8; 16];
    if getrandom::getrandom(&mut random).is_err() {
        random[..8].copy_from_slice(&owner.to_le_bytes());
        random[8..].copy_from_slice(&now_ms.to_le_bytes());
    }
    batch_id(random)
}

#[cfg(test)]
#[path = "reporter_tests.rs"]
mod tests;
