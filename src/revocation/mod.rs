//! Asking keyservice whether a key was revoked: the protocol (digest, path, answers), the
//! answers shared by every worker of an Envoy, and one callout per key at a time per worker.

pub mod cache;
pub mod feed;
pub mod feed_state;
pub mod in_flight;
pub mod protocol;
pub mod shared;
