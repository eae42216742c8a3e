//! keyservice's revocation feed, as the follower reads it: the long-poll request's path and the
//! answer (`GET /v1/revocations?after=SEQ&wait_seconds=S`, keyservice/docs/api.md): events in
//! commit order, each a key revoked or a key's rate limits changed. The answer is
//! untrusted bytes from the network: anything but exactly the documented shape is an error, and
//! changes nothing.

use serde::Deserialize;

use crate::revocation::protocol::Digest;

/// At most this many events are read from one answer (keyservice sends at most 1000).
const MAX_EVENTS: usize = 1000;

/// One answer of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedAnswer {
    pub events: Vec<FeedEvent>,
    /// The cursor to ask after next time.
    pub next: u64,
    /// More are waiting: ask again at once.
    pub more: bool,
    /// The cursor was too old (or from another database): forget the "active" answers.
    pub resync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedEvent {
    pub seq: u64,
    pub digest: Digest,
    pub kind: EventKind,
    /// When keyservice committed it, in ms since the Unix epoch.
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Revoked,
    /// The key's rate limits changed: its cached answer (which carries them) is forgotten.
    LimitsChanged,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswer {
    events: Vec<RawEvent>,
    next: u64,
    more: bool,
    resync: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    seq: u64,
    sha256: String,
    event: EventKind,
    at_ms: u64,
}

/// Why an answer was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError {
    /// Not the documented JSON shape.
    Malformed,
    /// Seqs not increasing, beyond `next`, or not after the cursor asked about.
    OutOfOrder,
    TooMany,
}

impl FeedError {
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "the answer is not the feed's JSON",
            Self::OutOfOrder => "the answer's seqs are out of order",
            Self::TooMany => "the answer holds too many events",
        }
    }
}

/// The long-poll path: after `cursor` (none: a new follower, which starts at the head).
pub fn feed_path(path: &str, cursor: Option<u64>, wait_seconds: u64) -> String {
    match cursor {
        Some(cursor) => format!("{path}?after={cursor}&wait_seconds={wait_seconds}"),
        None => path.to_owned(),
    }
}

/// Reads an answer to a request after `asked` (`None`: the first request). Events must be
/// after `asked`, strictly increasing, and at most `next`; a resync carries none.
pub fn parse_answer(body: &[u8], asked: Option<u64>) -> Result<FeedAnswer, FeedError> {
    let raw: RawAnswer = serde_json::from_slice(body).map_err(|_| FeedError::Malformed)?;
    if raw.events.len() > MAX_EVENTS {
        return Err(FeedError::TooMany);
    }
    if raw.resync && !raw.events.is_empty() {
        return Err(FeedError::Malformed);
    }
    let mut last = asked;
    let mut events = Vec::with_capacity(raw.events.len());
    for event in raw.events {
        if last.is_some_and(|last| event.seq <= last) || event.seq > raw.next {
            return Err(FeedError::OutOfOrder);
        }
        last = Some(event.seq);
        events.push(FeedEvent {
            seq: event.seq,
            digest: parse_digest(&event.sha256).ok_or(FeedError::Malformed)?,
            kind: event.event,
            at_ms: event.at_ms,
        });
    }
    if !raw.resync && asked.is_some_and(|asked| raw.next < asked) {
        return Err(FeedError::OutOfOrder);
    }
    Ok(FeedAnswer {
        events,
        next: raw.next,
        more: raw.more,
        resync: raw.resync,
    })
}

/// 64 lowercase hex digits, as keyservice writes a digest.
fn parse_digest(hex: &str) -> Option<Digest> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut digest = [0u8; 32];
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        digest[index] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(digest)
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
