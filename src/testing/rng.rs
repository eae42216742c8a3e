//! A tiny deterministic generator for the no-panic loops in unit tests (no crate needed).

/// xorshift64: the same sequence for the same seed, so a failure can be replayed.
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
