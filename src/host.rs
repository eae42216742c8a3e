//! What the per-request flow needs from the proxy. Envoy implements it in `plugin.rs`; unit
//! tests use a recording double.

use std::time::Duration;

use crate::response::LocalReply;
use crate::revocation_cache::SharedData;

/// An HTTP `GET` to an upstream cluster, dispatched without blocking the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout<'a> {
    pub cluster: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub timeout: Duration,
}

/// What a callout brought back: `status` is `None` after a timeout or a reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutAnswer {
    pub status: Option<u16>,
    pub cache_control: Option<String>,
}

pub trait Host: SharedData {
    /// The raw value of a request header; bytes because a client may send anything.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Replaces every value of a request header, or removes it with `None`.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Starts a callout; its answer arrives later under the returned id.
    fn dispatch_get(&self, callout: &Callout<'_>) -> Result<u32, String>;
    /// Answers the request locally instead of forwarding it.
    fn send_reply(&self, reply: &LocalReply);
    /// Lets a paused request continue upstream.
    fn resume_request(&self);
    /// Makes the calls that follow act on another context's request (a request waiting on this
    /// one's callout). `false` when that context is gone.
    fn switch_context(&self, context_id: u32) -> bool;
    /// Adds one to a counter; `None` (a stat the host would not define) does nothing. Envoy's
    /// implementation hands the sums over once per tick.
    fn increment(&self, metric: Option<u32>);
    /// Records a histogram value.
    fn record(&self, metric: Option<u32>, value: u64);
}
