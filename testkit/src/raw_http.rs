//! HTTP/1.1 written and read byte for byte: the path reaches the server exactly as given,
//! without the normalisation a client library applies (`/a/../b`, `//b` and `/%61` stay as they
//! are), and the connection is the test's to drop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::http::{REQUEST_TIMEOUT, Reply};

/// One HTTP/1.1 request on a new connection, written as given, and the response read until it
/// is complete or the server closes the connection.
pub fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let stream = send_raw(addr, method, path, headers)?;
    read_raw(stream, method == "HEAD")
}

/// Sends one HTTP/1.1 request, written as given, on a new connection (`Connection: close`) and
/// returns the connection, for [`read_raw`] to read the response, or for the test to drop (the
/// client going away).
pub fn send_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|err| format!("setting socket timeouts: {err}"))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("connection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|err| format!("writing the request: {err}"))?;
    Ok(stream)
}

/// Reads the response to a request sent by [`send_raw`]: until it is complete by its framing
/// (Envoy delays closing the connection after a local reply by a second), or the server closes
/// the connection. `head_only`: the response to a HEAD request, which has no body.
pub fn read_raw(mut stream: TcpStream, head_only: bool) -> Result<Reply, String> {
    let mut bytes = Vec::new();
    let mut buf = [0_u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                if response_complete(&bytes, head_only) {
                    break;
                }
            }
            // A reset after a complete response still leaves the response to read.
            Err(err) if !bytes.is_empty() && err.kind() == std::io::ErrorKind::ConnectionReset => {
                break;
            }
            Err(err) => {
                return Err(format!(
                    "reading the response ({} bytes so far): {err}",
                    bytes.len()
                ));
            }
        }
    }
    parse_response(&bytes, head_only)
}

/// Whether `bytes` hold a whole response, by `content-length` or chunked framing.
fn response_complete(bytes: &[u8], head_only: bool) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    if head_only {
        return true;
    }
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let rest = &bytes[end + 4..];
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        match line.split_once(':') {
            Some((name, value)) if name.trim() == "content-length" => {
                length = value.trim().parse::<usize>().ok();
            }
            Some((name, value))
                if name.trim() == "transfer-encoding" && value.contains("chunked") =>
            {
                return rest.starts_with(b"0\r\n\r\n") || rest.ends_with(b"\r\n0\r\n\r\n");
            }
            _ => {}
        }
    }
    length.is_some_and(|length| rest.len() >= length)
}

fn parse_response(bytes: &[u8], head_only: bool) -> Result<Reply, String> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete response head in {:?}", text()))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {:?}", text()))?;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers
            .entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_owned());
    }
    let rest = &bytes[end + 4..];
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|values| values.iter().any(|v| v.eq_ignore_ascii_case("chunked")));
    let body = if head_only {
        Vec::new()
    } else if chunked {
        decode_chunked(rest)?
    } else if let Some(length) = headers
        .get("content-length")
        .and_then(|values| values.first())
        .and_then(|value| value.parse::<usize>().ok())
    {
        rest.get(..length)
            .ok_or_else(|| format!("body shorter than content-length {length}: {:?}", text()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body: no chunk size line")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|err| format!("chunked body: bad size {size_text:?}: {err}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("chunked body: short chunk")?);
        rest = rest
            .get(size + 2..)
            .ok_or("chunked body: no CRLF after a chunk")?;
    }
}
