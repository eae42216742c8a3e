//! Test material shared by the unit tests: fixed keys of every type, a seeded random source, a
//! recording double of the host.

pub mod gate;
pub mod host;
pub mod keys;
pub mod rng;
