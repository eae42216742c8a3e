//! What the stand-in servers ([`crate::fault`], [`crate::idp`]) share: an accept loop that can
//! be stopped, closing the port, and the head of a request.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Accepts connections on `listener`, handing each to `accept` (which answers it on a thread of
/// its own), until `stop` is set; then drops the listener, so the port refuses connections.
pub(crate) fn accept_until(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    mut accept: impl FnMut(TcpStream) + Send + 'static,
) -> JoinHandle<()> {
    listener
        .set_nonblocking(true)
        .expect("making a loopback server's listener non-blocking");
    thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => accept(stream),
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

/// The parts of a request head the stand-ins look at.
pub(crate) struct RequestHead {
    pub method: String,
    pub path: String,
    /// The `Host` header (the filter's `:authority`), empty when absent.
    pub host: String,
}

/// Reads a request's head (blocking, at most 5 s between reads); `None` when the client goes
/// away first.
pub(crate) fn read_head(stream: &mut TcpStream) -> Option<RequestHead> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let host = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    Some(RequestHead { method, path, host })
}
