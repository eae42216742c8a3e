//! The per-request decision, host-free: pick the provider, verify the token (through the
//! verified-token cache), check claims and route policy, and say what happens next — allow
//! with these header writes, deny with this reply, ask keyservice, or wait for keys. Also the
//! state it keeps between requests (remote JWKS, parked requests) and its counters.

pub mod claims;
pub mod decision;
pub mod metering;
pub mod metrics;
pub mod parked;
pub mod remote_jwks;
mod requirement;
pub mod response;
pub mod text;
pub mod token_cache;
pub mod verify;
