//! Requests held until their provider's keys arrive: the first JWKS, or a re-fetch after a token
//! named an unknown `kid`. What the decision read is kept, so it can run again.

/// An owned copy of what the decision reads of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedHead {
    pub sources: Vec<Option<Vec<u8>>>,
    pub path: Option<Vec<u8>>,
    pub method: Option<Vec<u8>>,
    pub requirement: Option<Vec<u8>>,
    pub passing_preflight: bool,
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub context_id: u32,
    /// When to give up waiting, in milliseconds since the Unix epoch.
    pub deadline_ms: u64,
    pub head: OwnedHead,
}

/// Takes the parked requests whose deadline has passed at `now_ms`.
pub fn take_expired(parked: &mut Vec<Parked>, now_ms: u64) -> Vec<Parked> {
    let (expired, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(parked)
        .into_iter()
        .partition(|p| p.deadline_ms <= now_ms);
    *parked = waiting;
    expired
}

#[cfg(test)]
#[path = "parked_tests.rs"]
mod tests;
