//! A test identity provider: a small HTTP/1.1 server on a loopback port that serves a JWKS and an
//! OIDC discovery document, whose keys the test controls (publish, remove, sign with), that can be
//! down (answering an error status, or with its port closed) and come up again, and that logs
//! every request so a test can count the filter's fetches.
//!
//! Envoy reaches it through a STATIC cluster (`Bootstrap::cluster("idp", idp.addr)`); the filter
//! fetches with `:authority` from its `remote_jwks.authority`, which the log records as `host`.
//!
//! Served paths:
//! - `/.well-known/openid-configuration`: `{"issuer": ..., "jwks_uri": "http://idp.test<P>"}`, P
//!   being [`Idp::set_discovered_jwks_path`] (default `/.well-known/jwks.json`);
//! - the JWKS at `/.well-known/jwks.json`, at P, and at every path under `/jwks/` (so that
//!   several providers on one IdP each fetch a path of their own and can be counted apart);
//! - anything else: 404.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::idp_keys::IdpKey;
use crate::loopback::{RequestHead, accept_until, read_head};
use crate::poll;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// The `:authority` the tests configure for the filter's fetches.
pub const AUTHORITY: &str = "idp.test";

/// The longest a held answer ([`Idp::hold`]) waits for [`Idp::release`]: a failing test cannot
/// hang on it.
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// How the IdP answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Every request gets this status and an empty body (e.g. 503: down).
    Status(u16),
    /// Reads the request, then closes the connection without answering.
    Hangup,
}

/// One request the IdP received.
#[derive(Debug, Clone)]
pub struct IdpRequest {
    pub method: String,
    pub path: String,
    pub host: String,
    pub at: Instant,
    /// The status it was answered with (`None`: hung up, or still held).
    pub status: Option<u16>,
}

struct State {
    issuer: String,
    keys: Vec<Value>,
    discovered_jwks_path: String,
    mode: Mode,
}

#[derive(Default)]
struct Gate {
    held: Mutex<bool>,
    changed: Condvar,
}

pub struct Idp {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    log: Arc<Mutex<Vec<IdpRequest>>>,
    gate: Arc<Gate>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Idp {
    /// An IdP on a free loopback port, up, with no keys yet.
    pub fn start(issuer: &str) -> Self {
        Self::start_in(issuer, Mode::Up)
    }

    pub fn start_in(issuer: &str, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the test IdP");
        let addr = listener.local_addr().expect("test IdP address");
        let mut idp = Idp {
            addr,
            state: Arc::new(Mutex::new(State {
                issuer: issuer.to_owned(),
                keys: Vec::new(),
                discovered_jwks_path: JWKS_PATH.to_owned(),
                mode,
            })),
            log: Arc::new(Mutex::new(Vec::new())),
            gate: Arc::new(Gate::default()),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        idp.serve(listener);
        idp
    }

    fn serve(&mut self, listener: TcpListener) {
        self.stop.store(false, Ordering::SeqCst);
        let (state, log, gate) = (self.state.clone(), self.log.clone(), self.gate.clone());
        self.thread = Some(accept_until(listener, self.stop.clone(), move |stream| {
            let (state, log, gate) = (state.clone(), log.clone(), gate.clone());
            thread::spawn(move || answer(stream, &state, &log, &gate));
        }));
    }

    /// Publishes a key (replacing a published key with the same `kid`).
    pub fn publish(&self, key: &IdpKey) {
        self.publish_jwk(key.jwk());
    }

    /// Publishes a raw JWK (replacing one with the same `kid`).
    pub fn publish_jwk(&self, jwk: Value) {
        let mut state = lock(&self.state);
        state.keys.retain(|k| k["kid"] != jwk["kid"]);
        state.keys.push(jwk);
    }

    /// Removes the key with this `kid` from the JWKS.
    pub fn remove(&self, kid: &str) {
        lock(&self.state).keys.retain(|k| k["kid"] != kid);
    }

    /// The `kid`s published now, in order.
    pub fn kids(&self) -> Vec<String> {
        lock(&self.state)
            .keys
            .iter()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect()
    }

    /// The path of `jwks_uri` in the discovery document (also served as the JWKS).
    pub fn set_discovered_jwks_path(&self, path: &str) {
        lock(&self.state).discovered_jwks_path = path.to_owned();
    }

    pub fn set_mode(&self, mode: Mode) {
        lock(&self.state).mode = mode;
    }

    /// Answers wait (up to 30 s) from now on, until [`Idp::release`].
    pub fn hold(&self) {
        *lock(&self.gate.held) = true;
        self.gate.changed.notify_all();
    }

    /// Lets held answers (and those to come) go.
    pub fn release(&self) {
        *lock(&self.gate.held) = false;
        self.gate.changed.notify_all();
    }

    /// Stops listening: connections are refused until [`Idp::reopen`].
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Listens again on the same port.
    pub fn reopen(&mut self) {
        assert!(self.thread.is_none(), "the test IdP is already listening");
        // The port was ours a moment ago; std sets SO_REUSEADDR, and nothing else binds a
        // loopback port the OS handed out without being asked for it, but retry briefly.
        let listener = poll(Duration::from_secs(5), Duration::from_millis(20), || {
            TcpListener::bind(self.addr).ok()
        })
        .unwrap_or_else(|| panic!("re-binding the test IdP to {}", self.addr));
        self.serve(listener);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<IdpRequest> {
        lock(&self.log).clone()
    }

    /// The paths requested so far, in order.
    pub fn paths(&self) -> Vec<String> {
        lock(&self.log).iter().map(|r| r.path.clone()).collect()
    }

    /// How many requests for `path` so far.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.log).iter().filter(|r| r.path == path).count()
    }

    /// How many requests for `path` were answered 200 so far.
    pub fn served(&self, path: &str) -> usize {
        lock(&self.log)
            .iter()
            .filter(|r| r.path == path && r.status == Some(200))
            .count()
    }

    /// Waits (at most `timeout`) until `path` has been requested at least `n` times.
    pub fn wait_for_count(&self, path: &str, n: usize, timeout: Duration) -> Result<usize, String> {
        poll(timeout, Duration::from_millis(20), || {
            let count = self.count(path);
            (count >= n).then_some(count)
        })
        .ok_or_else(|| {
            format!(
                "the IdP saw {} request(s) for {path} in {timeout:?}, expected at least {n}; log: {:?}",
                self.count(path),
                self.paths()
            )
        })
    }

    /// Waits (at most `timeout`) until `path` has been answered 200 at least `n` times.
    pub fn wait_for_served(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, String> {
        poll(timeout, Duration::from_millis(20), || {
            let count = self.served(path);
            (count >= n).then_some(count)
        })
        .ok_or_else(|| {
            format!(
                "the IdP answered {path} with 200 {} time(s) in {timeout:?}, expected at least {n}; log: {:?}",
                self.served(path),
                self.requests()
            )
        })
    }

    /// Waits (at most `timeout`) for a request for `path` that arrived after `since`.
    pub fn wait_for_request_after(
        &self,
        path: &str,
        since: Instant,
        timeout: Duration,
    ) -> Result<IdpRequest, String> {
        poll(timeout, Duration::from_millis(20), || {
            lock(&self.log)
                .iter()
                .find(|r| r.path == path && r.at > since && r.status.is_some())
                .cloned()
        })
        .ok_or_else(|| {
            format!(
                "no answered request for {path} reached the IdP within {timeout:?}; log: {:?}",
                self.paths()
            )
        })
    }

    /// Waits until the filter may fetch `path` again for an unknown `kid`: `min_refetch_seconds`
    /// since the IdP last saw it, plus a second, because the filter compares whole seconds of
    /// Envoy's clock with the millisecond time of its last fetch. A computed wait for a documented
    /// rate limit, not a guess.
    pub fn wait_out_refetch_window(&self, path: &str, min_refetch_seconds: u64) {
        if let Some(last) = self.last_request(path) {
            let until =
                last + Duration::from_secs(min_refetch_seconds + 1) + Duration::from_millis(100);
            let now = Instant::now();
            if until > now {
                thread::sleep(until - now);
            }
        }
    }

    /// When `path` was last requested.
    pub fn last_request(&self, path: &str) -> Option<Instant> {
        lock(&self.log)
            .iter()
            .rev()
            .find(|r| r.path == path)
            .map(|r| r.at)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.release();
        self.close();
    }
}

fn answer(mut stream: TcpStream, state: &Mutex<State>, log: &Mutex<Vec<IdpRequest>>, gate: &Gate) {
    let Some(RequestHead { method, path, host }) = read_head(&mut stream) else {
        return;
    };
    let index = {
        let mut log = lock(log);
        log.push(IdpRequest {
            method: method.clone(),
            path: path.clone(),
            host,
            at: Instant::now(),
            status: None,
        });
        log.len() - 1
    };
    {
        let held = lock(&gate.held);
        let _ = gate
            .changed
            .wait_timeout_while(held, HOLD_LIMIT, |held| *held);
    }
    // The answer reflects the IdP's state when it is sent (after a hold, the released state).
    let (status, body) = {
        let state = lock(state);
        match state.mode {
            Mode::Hangup => return,
            Mode::Status(status) => (status, String::new()),
            Mode::Up => route(&state, &method, &path),
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let content_type = if body.is_empty() {
        ""
    } else {
        "content-type: application/json\r\n"
    };
    let written = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\n{content_type}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .and_then(|()| stream.flush());
    if written.is_ok()
        && let Some(entry) = lock(log).get_mut(index)
    {
        entry.status = Some(status);
    }
}

fn route(state: &State, method: &str, path: &str) -> (u16, String) {
    if method != "GET" {
        return (405, String::new());
    }
    if path == DISCOVERY_PATH {
        let document = json!({
            "issuer": state.issuer,
            "jwks_uri": format!("http://{AUTHORITY}{}", state.discovered_jwks_path),
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        });
        return (200, document.to_string());
    }
    if path == JWKS_PATH || path == state.discovered_jwks_path || path.starts_with("/jwks/") {
        return (200, json!({"keys": state.keys}).to_string());
    }
    (404, String::new())
}
