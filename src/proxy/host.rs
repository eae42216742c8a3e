//! What the per-request flow needs from the proxy. Envoy implements it in `plugin.rs`; unit
//! tests use a recording double.

use std::time::Duration;

use crate::gate::response::LocalReply;
use crate::policy::rate_limits::Limits;
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
    /// A key's own rate limits, from keyservice's `keygate-rate-limit` header; `None` when absent
    /// or not exactly that header's shape.
    pub key_limits: Option<Limits>,
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
            key_limits: None,
        }
    }

    /// With the value of the answer's `keygate-rate-limit` header.
    pub fn with_key_limits(mut self, header: Option<&[u8]>) -> Self {
        self.key_limits = header.and_then(Limits::parse_header);
        self
    }
}

pub trait Host: SharedData {
    /// The raw value of a request header; bytes because a client may send anything.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Replaces every value of a request header, or removes it with `None`.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Starts a callout; its answer arrives later under the returned id.
    fn dispatch_get(&self, callout: &Callout<'_>) -> Result<u32, String>;
    /// Starts a `POST` of a JSON `body`; its answer arrives later under the returned id.
    fn dispatch_post(&self, callout: &Callout<'_>, body: &[u8]) -> Result<u32, String>;
    /// The id of the shared queue `name`, common to every VM of this `vm_id` (created by the
    /// first to ask).
    fn queue(&self, name: &str) -> Option<u32>;
    /// Adds a message to a shared queue; `false` when the host refused it.
    fn enqueue(&self, queue: u32, message: &[u8]) -> bool;
    /// Takes the oldest message of a shared queue, if there is one.
    fn dequeue(&self, queue: u32) -> Option<Vec<u8>>;
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
