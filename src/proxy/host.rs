//! What the per-request flow needs from the proxy. Envoy implements it in `plugin.rs`; unit
//! tests use a recording double.

use std::time::Duration;

use crate::gate::response::LocalReply;
use crate::revocation::cache::SharedData;

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

impl CalloutAnswer {
    /// The answer from the raw values of the callout's `:status` and `cache-control` headers.
    /// A status is HTTP's three digits and nothing else: `0200` or `+200` would read as 200
    /// ("active") through `str::parse`, so they are no status, as after a reset.
    pub fn from_headers(status: Option<&[u8]>, cache_control: Option<&[u8]>) -> Self {
        let status = match status {
            Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_digit) => Some(
                [a, b, c]
                    .iter()
                    .fold(0, |n, d| n * 10 + u16::from(d - b'0')),
            ),
            _ => None,
        };
        Self {
            status,
            cache_control: cache_control.and_then(|bytes| String::from_utf8(bytes.to_vec()).ok()),
        }
    }
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
    /// The requirement the request's route selects: the string at
    /// `xds.route_metadata.filter_metadata.keygate.requirement`.
    fn route_requirement(&self) -> Option<Vec<u8>>;
    /// Publishes a value as the request's filter state (Envoy keeps it as `wasm.<name>`).
    fn set_filter_state(&self, name: &str, value: &str);
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
