//! Following keyservice's revocation feed, from the root context's tick, host-free.
//!
//! Every worker, on each tick, reads the feed's shared state into its revocation cache (so its
//! "active" answers follow the feed's health, and its local table is dropped when revocations
//! arrive). One worker per Envoy follows: the one holding the shared lease, renewed every tick;
//! when its worker goes, the lease lapses and another takes over from the shared cursor. The
//! follower long-polls `GET <feed.path>?after=<cursor>&wait_seconds=<wait>` through
//! `dispatch_http_call`, marks each revoked key in the shared cache, then moves the cursor.
//! Failures back off (1 s doubling to 10 s); while the feed has not answered for
//! `stale_after_seconds`, the cache keeps "active" answers only as long as without the feed.

use std::time::Duration;

use log::{info, warn};

use crate::config::FeedConfig;
use crate::gate::decision::Gate;
use crate::proxy::host::{Callout, CalloutAnswer, Host};
use crate::revocation::cache::{RevocationCache, Verdict};
use crate::revocation::feed::{EventKind, FeedAnswer, feed_path, parse_answer};
use crate::revocation::feed_state::{FeedState, FeedView, hold_lease};

const MIN_BACKOFF_MS: u64 = 1_000;
/// How often a worker claims or renews the lease: well within its lapse (`LEASE_MS`), and rarely
/// enough that ticks cost little (the shared state is still read every tick).
const LEASE_EVERY_MS: u64 = 500;
const MAX_BACKOFF_MS: u64 = 10_000;
/// Beyond the long poll's own wait, how long its callout may take.
const POLL_SLACK_SECONDS: u64 = 5;

/// One worker's part in following the feed.
#[derive(Debug)]
pub struct FeedFollower {
    /// This worker's name in the lease: random, so workers (and Envoys after a hot restart)
    /// never share one.
    owner: u64,
    poll: Option<Poll>,
    retry_at_ms: u64,
    backoff_ms: u64,
    /// Whether the feed looked healthy on the last tick this worker led, for the log and the
    /// fallback count.
    healthy: bool,
    /// Whether this worker held the lease when it last looked, and when that was.
    leading: bool,
    lease_checked_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Poll {
    call_id: u32,
    /// The cursor it asked after.
    asked: Option<u64>,
    sent_ms: u64,
}

impl FeedFollower {
    pub fn new(owner: u64) -> Self {
        Self {
            owner,
            poll: None,
            retry_at_ms: 0,
            backoff_ms: 0,
            healthy: false,
            leading: false,
            lease_checked_ms: None,
        }
    }

    /// The tick: refresh this worker's view of the feed; if this worker holds the lease and no
    /// poll is out, dispatch one. Returns the id of a callout it dispatched.
    pub fn on_tick(&mut self, gate: &Gate, host: &dyn Host, now_ms: u64) -> Option<u32> {
        let (cache, feed, revocation) = parts(gate)?;
        let (state, _) = FeedState::read(host, &cache.feed_state_key());
        let view = view_of(&state, feed, revocation.timeout_ms);
        cache.observe_feed(view);
        let due = self
            .lease_checked_ms
            .is_none_or(|checked| now_ms.saturating_sub(checked) >= LEASE_EVERY_MS);
        if due {
            self.leading = hold_lease(host, &cache.feed_lease_key(), self.owner, now_ms);
            self.lease_checked_ms = Some(now_ms);
        }
        if !self.leading {
            return None;
        }
        let healthy = view.healthy(now_ms);
        if healthy != self.healthy || due {
            // On a change, and with each lease check: a host call per tick would cost more.
            host.record(gate.metrics.feed_healthy, u64::from(healthy));
        }
        if healthy != self.healthy {
            if healthy {
                info!("revocation feed: following (cursor {:?})", state.cursor);
            } else if state.cursor.is_some() {
                host.increment(gate.metrics.feed_fallbacks);
                warn!(
                    "revocation feed: no answer for {} s; active answers are kept at most revocation.cache.max_active_seconds until it answers again",
                    feed.stale_after_seconds
                );
            }
            self.healthy = healthy;
        }
        // A poll whose answer never came (its worker's callout was lost) is given up.
        let wait_bound_ms = (feed.wait_seconds + 2 * POLL_SLACK_SECONDS) * 1000;
        if self
            .poll
            .is_some_and(|poll| now_ms.saturating_sub(poll.sent_ms) > wait_bound_ms)
        {
            self.poll = None;
        }
        if self.poll.is_some() || now_ms < self.retry_at_ms {
            return None;
        }
        let path = feed_path(&feed.path, state.cursor, feed.wait_seconds);
        let callout = Callout {
            cluster: &revocation.cluster,
            authority: &revocation.authority,
            path: &path,
            timeout: Duration::from_secs(feed.wait_seconds + POLL_SLACK_SECONDS),
        };
        match host.dispatch_get(&callout) {
            Ok(call_id) => {
                self.poll = Some(Poll {
                    call_id,
                    asked: state.cursor,
                    sent_ms: now_ms,
                });
                Some(call_id)
            }
            Err(problem) => {
                warn!("revocation feed: poll could not be dispatched to cluster {:?}: {problem}", revocation.cluster);
                self.failed(gate, host, now_ms);
                None
            }
        }
    }

    /// The feed answered (or the callout failed: no status).
    pub fn on_answer(
        &mut self,
        gate: &Gate,
        host: &dyn Host,
        call_id: u32,
        answer: &CalloutAnswer,
        body: Option<&[u8]>,
        now_ms: u64,
    ) {
        let Some(poll) = self.poll.filter(|poll| poll.call_id == call_id) else {
            return;
        };
        self.poll = None;
        let Some((cache, _, _)) = parts(gate) else {
            return;
        };
        let parsed = match (answer.status, body) {
            (Some(200), Some(body)) => parse_answer(body, poll.asked).map_err(|e| e.description()),
            (Some(200), None) => Err("the answer has no body"),
            (Some(_), _) => Err("keyservice answered another status"),
            (None, _) => Err("no answer in time, or the connection failed"),
        };
        match parsed {
            Ok(answer) => {
                self.apply(gate, host, cache, poll.asked, &answer, now_ms);
                self.backoff_ms = 0;
                self.retry_at_ms = 0;
            }
            Err(problem) => {
                warn!("revocation feed: poll failed: {problem} (status {:?})", answer.status);
                self.failed(gate, host, now_ms);
            }
        }
    }

    fn failed(&mut self, gate: &Gate, host: &dyn Host, now_ms: u64) {
        host.increment(gate.metrics.feed_polls_error);
        self.backoff_ms = (self.backoff_ms * 2).clamp(MIN_BACKOFF_MS, MAX_BACKOFF_MS);
        self.retry_at_ms = now_ms.saturating_add(self.backoff_ms);
    }

    /// Marks the revoked keys, then moves the shared cursor (only from where this poll asked:
    /// a follower that lost its lease meanwhile must not move another's cursor back).
    fn apply(
        &mut self,
        gate: &Gate,
        host: &dyn Host,
        cache: &RevocationCache,
        asked: Option<u64>,
        answer: &FeedAnswer,
        now_ms: u64,
    ) {
        host.increment(gate.metrics.feed_polls_ok);
        host.record(gate.metrics.feed_last_success_s, now_ms / 1000);
        let key = cache.feed_state_key();
        let applied = !answer.events.is_empty();
        if applied {
            // Announced first: an "active" answer stored from now on is kept briefly (it may
            // predate one of these revocations).
            update_state(host, &key, |state| state.applied_at_ms = now_ms);
        }
        for event in &answer.events {
            match event.kind {
                EventKind::Revoked => {
                    cache.store(host, &event.digest, Verdict::Revoked, u64::MAX, now_ms);
                    host.increment(gate.metrics.feed_revocations_applied);
                }
                EventKind::LimitsChanged => cache.forget(host, &event.digest),
            }
            host.record(gate.metrics.feed_lag_ms, now_ms.saturating_sub(event.at_ms));
        }
        if answer.resync {
            host.increment(gate.metrics.feed_resyncs);
            warn!("revocation feed: resync (the cursor was past keyservice's retention); cached active answers are dropped");
        }
        update_state(host, &key, |state| {
            if state.cursor != asked && !answer.resync {
                return;
            }
            state.cursor = Some(answer.next);
            state.last_ok_ms = now_ms;
            if answer.resync {
                state.resync_at_ms = now_ms;
            }
            if applied {
                state.applied_at_ms = now_ms;
            }
        });
        if answer.more {
            self.retry_at_ms = 0;
        }
        // The view changes at once on this worker; the others see it on their next tick.
        let (state, _) = FeedState::read(host, &key);
        if let Some(feed) = gate.config.revocation.as_ref().and_then(|r| r.feed.as_ref()) {
            let timeout_ms = gate.config.revocation.as_ref().map_or(0, |r| r.timeout_ms);
            cache.observe_feed(view_of(&state, feed, timeout_ms));
        }
    }
}

fn parts(
    gate: &Gate,
) -> Option<(
    &RevocationCache,
    &FeedConfig,
    &crate::config::RevocationConfig,
)> {
    let revocation = gate.config.revocation.as_ref()?;
    Some((gate.revocation_cache.as_ref()?, revocation.feed.as_ref()?, revocation))
}

fn view_of(state: &FeedState, feed: &FeedConfig, timeout_ms: u64) -> FeedView {
    FeedView {
        healthy_until_ms: if state.cursor.is_some() {
            state
                .last_ok_ms
                .saturating_add(feed.stale_after_seconds.saturating_mul(1000))
        } else {
            0
        },
        resync_at_ms: state.resync_at_ms,
        cursor: state.cursor,
        max_active_seconds: feed.max_active_seconds,
        race_window_ms: timeout_ms.saturating_add(1000),
    }
}

/// Read, change, compare-and-swap; a lost race is tried again with what the other wrote.
fn update_state(host: &dyn Host, key: &str, change: impl Fn(&mut FeedState)) {
    for _ in 0..3 {
        let (mut state, cas) = FeedState::read(host, key);
        change(&mut state);
        if host.shared_set(key, &state.encode(), cas).is_ok() {
            return;
        }
    }
    warn!("revocation feed: its state could not be written (contention)");
}

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;
