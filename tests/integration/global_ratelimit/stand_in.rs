//! A stand-in for the rate limit service: Envoy's `envoy.service.ratelimit.v3.RateLimitService`
//! over gRPC, the least of HTTP/2 and protobuf that Envoy's gRPC client needs, on a loopback port.
//!
//! It records every call (the domain and each descriptor's entries) and answers from the limits
//! of the service's configuration (`deploy/ratelimit/config.yaml`, matched as envoyproxy/ratelimit
//! does, [`super::limit_for`]): one status per descriptor with the limit that applies to it (none
//! for a descriptor nothing matches), `OVER_LIMIT` for a descriptor holding an entry the test
//! marked as over its limit, and `OVER_LIMIT` overall if any is. It counts nothing itself: the
//! real service's counting is Redis's, not this example's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::{Entry, limit_for};

/// One `ShouldRateLimit` call as the stand-in received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub domain: String,
    /// Each descriptor's entries, (key, value), in order.
    pub descriptors: Vec<Vec<(String, String)>>,
}

struct Shared {
    /// The service configuration's `descriptors`.
    config: Value,
    calls: Mutex<Vec<Call>>,
    /// Entries (key, value) whose descriptors are answered `OVER_LIMIT`.
    over: Mutex<BTreeSet<(String, String)>>,
    stop: AtomicBool,
}

pub struct RateLimitService {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl RateLimitService {
    /// Listens on a loopback port, answering with the limits of `config` (the service
    /// configuration's `descriptors` list).
    pub fn start(config: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the rate limit stand-in");
        let addr = listener.local_addr().expect("the stand-in's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = Arc::new(Shared {
            config,
            calls: Mutex::new(Vec::new()),
            over: Mutex::new(BTreeSet::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            while !accepting.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = accepting.clone();
                        thread::spawn(move || serve(stream, &shared));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RateLimitService { addr, shared }
    }

    /// From now on, descriptors holding the entry (key, value) are over their limit.
    pub fn over_limit(&self, key: &str, value: &str) {
        lock(&self.shared.over).insert((key.to_owned(), value.to_owned()));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---- HTTP/2 (RFC 9113), as much as one gRPC client needs ----------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The next whole frame at the start of `buffer`, taken out of it.
fn take_frame(buffer: &mut Vec<u8>) -> Option<Frame> {
    if buffer.len() < 9 {
        return None;
    }
    let length = u32::from_be_bytes([0, buffer[0], buffer[1], buffer[2]]) as usize;
    if buffer.len() < 9 + length {
        return None;
    }
    let frame = Frame {
        kind: buffer[3],
        flags: buffer[4],
        stream: u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) & 0x7fff_ffff,
        payload: buffer[9..9 + length].to_vec(),
    };
    buffer.drain(..9 + length);
    Some(frame)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len())
        .expect("a small frame")
        .to_be_bytes();
    let mut out = vec![length[1], length[2], length[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// One connection from Envoy, until it closes it or the stand-in stops.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    // The server's preface: SETTINGS, all defaults.
    if stream.write_all(&frame(SETTINGS, 0, 0, &[])).is_err() {
        return;
    }
    let mut buffer = Vec::new();
    let mut preface_seen = false;
    // Request bodies by stream, until END_STREAM.
    let mut bodies: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut chunk = [0_u8; 16 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        if !preface_seen {
            if buffer.len() < PREFACE.len() {
                continue;
            }
            if !buffer.starts_with(PREFACE) {
                return;
            }
            buffer.drain(..PREFACE.len());
            preface_seen = true;
        }
        while let Some(frame) = take_frame(&mut buffer) {
            let reply = match frame.kind {
                SETTINGS if frame.flags & ACK == 0 => self::frame(SETTINGS, ACK, 0, &[]),
                PING if frame.flags & ACK == 0 => self::frame(PING, ACK, 0, &frame.payload),
                GOAWAY => return,
                HEADERS => {
                    bodies.entry(frame.stream).or_default();
                    if frame.flags & END_STREAM != 0 {
                        // A request without a body: not ShouldRateLimit.
                        grpc_reply(frame.stream, None)
                    } else {
                        Vec::new()
                    }
                }
                DATA => data(&frame, &mut bodies, shared),
                _ => Vec::new(),
            };
            if !reply.is_empty() && stream.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

/// A DATA frame: the body so far, and at its end the answer; the connection's window given back.
fn data(frame: &Frame, bodies: &mut BTreeMap<u32, Vec<u8>>, shared: &Shared) -> Vec<u8> {
    let mut payload = frame.payload.as_slice();
    if frame.flags & PADDED != 0 && !payload.is_empty() {
        let padding = usize::from(payload[0]);
        payload = &payload[1..payload.len().saturating_sub(padding).max(1)];
    }
    bodies
        .entry(frame.stream)
        .or_default()
        .extend_from_slice(payload);
    let mut out = Vec::new();
    if !frame.payload.is_empty() {
        let increment = u32::try_from(frame.payload.len()).unwrap_or(0);
        out.extend(self::frame(WINDOW_UPDATE, 0, 0, &increment.to_be_bytes()));
    }
    if frame.flags & END_STREAM != 0 {
        let body = bodies.remove(&frame.stream).unwrap_or_default();
        let answer = body
            .get(5..)
            .and_then(decode_request)
            .map(|call| answer(call, shared));
        out.extend(grpc_reply(frame.stream, answer.as_deref()));
    }
    out
}

/// A gRPC response on `stream`: headers, the message, trailers with `grpc-status` 0; without a
/// message, `grpc-status` 12 (unimplemented) alone.
fn grpc_reply(stream: u32, message: Option<&[u8]>) -> Vec<u8> {
    // HPACK without Huffman coding or the dynamic table: `:status: 200` is static entry 8;
    // content-type (static entry 31) and grpc-status are literals without indexing.
    let mut headers = vec![0x88, 0x0f, 0x10, 16];
    headers.extend_from_slice(b"application/grpc");
    let trailer = |status: &[u8]| {
        let mut block = vec![0x00, 11];
        block.extend_from_slice(b"grpc-status");
        block.push(u8::try_from(status.len()).unwrap_or(0));
        block.extend_from_slice(status);
        block
    };
    let mut out = frame(HEADERS, END_HEADERS, stream, &headers);
    match message {
        Some(message) => {
            let length = u32::try_from(message.len()).expect("a small message");
            let mut grpc = vec![0];
            grpc.extend_from_slice(&length.to_be_bytes());
            grpc.extend_from_slice(message);
            out.extend(frame(DATA, 0, stream, &grpc));
            out.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                stream,
                &trailer(b"0"),
            ));
        }
        None => out.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &trailer(b"12"),
        )),
    }
    out
}

// ---- protobuf, the fields of rls.proto in use -------------------------------------------------

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A message's length-delimited fields (strings, messages), (number, bytes), skipping the
/// others; `None` if it is not protobuf.
fn fields(bytes: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at)?;
        match key & 7 {
            0 => {
                read_varint(bytes, &mut at)?;
            }
            1 => at += 8,
            2 => {
                let length = usize::try_from(read_varint(bytes, &mut at)?).ok()?;
                let value = bytes.get(at..at.checked_add(length)?)?;
                at += length;
                out.push((key >> 3, value));
            }
            5 => at += 4,
            _ => return None,
        }
    }
    (at == bytes.len()).then_some(out)
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// `RateLimitRequest { string domain = 1; repeated RateLimitDescriptor descriptors = 2; }`,
/// `RateLimitDescriptor { repeated Entry entries = 1; }`, `Entry { string key = 1; string value = 2; }`.
fn decode_request(message: &[u8]) -> Option<Call> {
    let mut call = Call {
        domain: String::new(),
        descriptors: Vec::new(),
    };
    for (number, bytes) in fields(message)? {
        match number {
            1 => call.domain = text(bytes)?,
            2 => {
                let mut entries = Vec::new();
                for (number, entry) in fields(bytes)? {
                    if number == 1 {
                        let (mut key, mut value) = (String::new(), String::new());
                        for (number, bytes) in fields(entry)? {
                            match number {
                                1 => key = text(bytes)?,
                                2 => value = text(bytes)?,
                                _ => {}
                            }
                        }
                        entries.push((key, value));
                    }
                }
                call.descriptors.push(entries);
            }
            _ => {}
        }
    }
    Some(call)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).unwrap_or(0) | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap_or(0));
}

fn put_uint(out: &mut Vec<u8>, number: u64, value: u64) {
    put_varint(out, number << 3);
    put_varint(out, value);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `RateLimitResponse.Code`.
const OK: u64 = 1;
const OVER_LIMIT: u64 = 2;

/// `RateLimitResponse.RateLimit.Unit` of a configuration's `unit`.
fn unit_number(unit: &str) -> u64 {
    match unit {
        "second" => 1,
        "minute" => 2,
        "hour" => 3,
        "day" => 4,
        _ => 0,
    }
}

/// Records the call and encodes the answer: `RateLimitResponse { Code overall_code = 1;
/// repeated DescriptorStatus statuses = 2; }`, `DescriptorStatus { Code code = 1; RateLimit
/// current_limit = 2; uint32 limit_remaining = 3; }`, `RateLimit { uint32 requests_per_unit =
/// 1; Unit unit = 2; }`.
fn answer(call: Call, shared: &Shared) -> Vec<u8> {
    let over = lock(&shared.over).clone();
    let mut statuses = Vec::new();
    let mut overall = OK;
    for descriptor in &call.descriptors {
        let is_over = descriptor.iter().any(|entry| over.contains(entry));
        let entries: Vec<Entry> = descriptor
            .iter()
            .map(|(key, value)| (key.clone(), Some(value.clone())))
            .collect();
        let mut status = Vec::new();
        match limit_for(&shared.config, &entries) {
            Some(limit) => {
                put_uint(&mut status, 1, if is_over { OVER_LIMIT } else { OK });
                let mut current = Vec::new();
                put_uint(&mut current, 1, limit.requests_per_unit);
                put_uint(&mut current, 2, unit_number(&limit.unit));
                put_bytes(&mut status, 2, &current);
                // One request counted so far, or none left.
                let remaining = if is_over {
                    0
                } else {
                    limit.requests_per_unit.saturating_sub(1)
                };
                put_uint(&mut status, 3, remaining);
                if is_over {
                    overall = OVER_LIMIT;
                }
            }
            // The real service: a descriptor without a limit is OK, with no limit to report.
            None => put_uint(&mut status, 1, OK),
        }
        statuses.push(status);
    }
    lock(&shared.calls).push(call);
    let mut out = Vec::new();
    put_uint(&mut out, 1, overall);
    for status in statuses {
        put_bytes(&mut out, 2, &status);
    }
    out
}
