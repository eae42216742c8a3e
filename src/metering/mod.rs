//! Per-key usage and rate limits, counted in-process: the limits a key or an identity has, the
//! fixed-window counters every worker of an Envoy shares, each worker's usage counts, and the
//! batches one reporter per Envoy sends to keyservice.

pub mod limiter;
pub mod report;
pub mod subject;
pub mod usage;
