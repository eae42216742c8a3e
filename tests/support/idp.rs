//! A test identity provider: a small HTTP/1.1 server on a loopback port that serves a JWKS and an
//! OIDC discovery document, whose keys the test controls (publish, remove, sign with), that can be
//! down (answering an error status, or with its port closed) and come up again, and that logs
//! every request so a test can count the filter's fetches.
//!
//! Envoy reaches it through a STATIC cluster (`RigBuilder::cluster("idp", idp.addr)`); the filter
//! fetches with `:authority` from its `remote_jwks.authority`, which the log records as `host`.
//!
//! Served paths:
//! - `/.well-known/openid-configuration`: `{"issuer": ..., "jwks_uri": "http://idp.test<P>"}`, P
//!   being [`Idp::set_discovered_jwks_path`] (default `/.well-known/jwks.json`);
//! - the JWKS at `/.well-known/jwks.json`, at P, and at every path under `/jwks/` (so that
//!   several providers on one IdP each fetch a path of their own and can be counted apart);
//! - anything else: 404.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{b64url, poll};

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// The `:authority` the tests configure for the filter's fetches.
pub const AUTHORITY: &str = "idp.test";

/// The longest a held answer ([`Idp::hold`]) waits for [`Idp::release`]: a failing test cannot
/// hang on it.
const HOLD_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Keys

/// A signing key of the IdP, with its `kid` and the algorithm it signs with.
pub struct IdpKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public JWK without `kid`, `alg` or `use`.
    public: Value,
    /// The public key as SPKI PEM (RSA only): the bytes of an algorithm-confusion token.
    pub public_pem: Option<String>,
}

impl IdpKey {
    /// RSA 2048, RS256. Slow-ish in debug builds (the rsa crate is optimised in profile.dev, but
    /// still): make a few per test, not one per case.
    pub fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let private =
            rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generating an RSA key");
        let der = private.to_pkcs1_der().expect("RSA key to DER");
        let pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("RSA public key to PEM");
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public: json!({
                "kty": "RSA",
                "n": b64url(&private.n().to_bytes_be()),
                "e": b64url(&private.e().to_bytes_be()),
            }),
            public_pem: Some(pem),
        }
    }

    /// P-256, ES256.
    pub fn p256(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::SecretKey::random(&mut rand::thread_rng());
        let point = secret.public_key().to_sec1_bytes();
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(
                secret.to_pkcs8_der().expect("P-256 key to DER").as_bytes(),
            ),
            public: json!({
                "kty": "EC", "crv": "P-256",
                "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
            }),
            public_pem: None,
        }
    }

    /// P-384, ES384.
    pub fn p384(kid: &str) -> Self {
        use p384::pkcs8::EncodePrivateKey;
        let secret = p384::SecretKey::random(&mut rand::thread_rng());
        let point = secret.public_key().to_sec1_bytes();
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES384,
            encoding: EncodingKey::from_ec_der(
                secret.to_pkcs8_der().expect("P-384 key to DER").as_bytes(),
            ),
            public: json!({
                "kty": "EC", "crv": "P-384",
                "x": b64url(&point[1..49]), "y": b64url(&point[49..]),
            }),
            public_pem: None,
        }
    }

    /// Ed25519, EdDSA.
    pub fn ed25519(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::thread_rng());
        IdpKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(
                signing
                    .to_pkcs8_der()
                    .expect("Ed25519 key to DER")
                    .as_bytes(),
            ),
            public: json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": b64url(signing.verifying_key().as_bytes()),
            }),
            public_pem: None,
        }
    }

    /// The public JWK as the IdP publishes it: with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Value {
        let mut jwk = self.public.clone();
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(alg_name(self.alg));
        jwk["use"] = json!("sig");
        jwk
    }

    /// A token signed with this key, its `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }

    /// A token signed with this key, with this `kid` (or none) in the header.
    pub fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing a test token")
    }
}

/// The JOSE name of an algorithm (`RS256`, `EdDSA`): its `Debug` form is exactly that.
pub fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// A token with this header (`alg`, `kid`) and claims, HMAC-signed with `secret`: e.g. the
/// algorithm-confusion token, "HS256" signed with an RSA public key's bytes.
pub fn sign_hmac_bytes(alg: Algorithm, kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .expect("signing a test token")
}

// ---------------------------------------------------------------------------------------------
// Server

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
        listener
            .set_nonblocking(true)
            .expect("making the IdP's listener non-blocking");
        self.stop.store(false, Ordering::SeqCst);
        let (state, log, gate, stop) = (
            self.state.clone(),
            self.log.clone(),
            self.gate.clone(),
            self.stop.clone(),
        );
        self.thread = Some(thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (state, log, gate) = (state.clone(), log.clone(), gate.clone());
                        thread::spawn(move || answer(stream, &state, &log, &gate));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped here: the port refuses connections from now on.
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
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let host = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
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

// ---------------------------------------------------------------------------------------------
// Plugin configuration and expectations for provider tests

/// A provider's `remote_jwks` on Envoy cluster `cluster`, fetching `path` with `:authority`
/// [`AUTHORITY`]; `extra` adds or overrides fields (`min_refetch_seconds`, `until_ready`, ...).
pub fn remote_jwks(cluster: &str, path: &str, extra: &Value) -> Value {
    let mut remote = json!({"cluster": cluster, "authority": AUTHORITY, "path": path});
    merge(&mut remote, extra);
    remote
}

/// Copies the fields of `extra` (an object) into `target`.
pub fn merge(target: &mut Value, extra: &Value) {
    if let (Some(target), Some(extra)) = (target.as_object_mut(), extra.as_object()) {
        for (name, value) in extra {
            target.insert(name.clone(), value.clone());
        }
    }
}

/// A session token's claims, Clerk style: `iss`, `sub`, `aud`, `org.id`, `roles`, `iat` now and
/// `exp` in ten minutes.
pub fn session_claims(issuer: &str, sub: &str, org: &str, aud: &str) -> Value {
    let now = super::now();
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": aud,
        "org": {"id": org, "slug": format!("{org}-slug")},
        "roles": ["admin", "member"],
        "iat": now,
        "exp": now + 600,
    })
}

/// Polls keygate's counter `name` until it is at least `at_least`, at most `timeout`.
pub fn poll_keygate_stat(
    rig: &super::Rig,
    name: &str,
    at_least: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let mut last = 0;
    poll(timeout, Duration::from_millis(50), || {
        last = rig.keygate_stat(name);
        (last >= at_least).then_some(last)
    })
    .ok_or_else(|| {
        format!("keygate.{name} is {last} after {timeout:?}, expected at least {at_least}")
    })
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// 401 `Invalid or expired token` whose challenge names this `error_description`.
pub fn expect_rejected(reply: &super::Reply, description: &str) -> Result<(), String> {
    super::expect_invalid_token(reply)?;
    let challenge = reply.header("www-authenticate")?;
    let expected = format!("error_description=\"{description}\"");
    if challenge.ends_with(&expected) {
        Ok(())
    } else {
        Err(format!(
            "expected error_description {description:?}, got www-authenticate {challenge:?}"
        ))
    }
}

/// 200 from echo-upstream, which saw exactly these identity headers (`None`: absent).
pub fn expect_identity(
    reply: &super::Reply,
    user: Option<&str>,
    org: Option<&str>,
    roles: Option<&str>,
) -> Result<(), String> {
    super::expect_allowed(reply, user, org)?;
    super::expect_echoed(reply, "x-roles", roles)
}
