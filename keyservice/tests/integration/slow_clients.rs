//! Clients that are slow or hold on: `keyservice serve` must cut them off after its timeouts,
//! cap how many it holds, and stop within its grace period however they behave. Real processes
//! on a SQLite file in a tempdir, spoken to over raw sockets.
//!
//! Waits are generous and only bound what must happen; ordering is asserted, not speed.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use testkit::poll;
use testkit::process::Server;

use crate::common::{ADMIN, SECRET, start_keyservice};

/// How long a test waits for what must happen soon (a 1 s timeout to fire, a process to exit).
const GENEROUS: Duration = Duration::from_secs(30);

fn database(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("keys.db").display())
}

fn start(extra: &[&str]) -> (TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_keyservice(&database(&dir), dir.path(), "keyservice", extra);
    (dir, server)
}

fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.addr).unwrap()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: keyservice\r\n\r\n";

/// How a wait for the server to close a connection ended, with what it sent meanwhile.
#[derive(Debug)]
enum Ending {
    Closed(String),
    StillOpen(String),
}

/// Reads until the server closes the connection (EOF or reset), for at most `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Ending {
    let deadline = Instant::now() + limit;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ending::StillOpen(String::from_utf8_lossy(&received).into_owned());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return Ending::Closed(String::from_utf8_lossy(&received).into_owned()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ending::Closed(String::from_utf8_lossy(&received).into_owned());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading from keyservice: {e}"),
        }
    }
}

/// Reads one response (keyservice's always carry Content-Length) and leaves the connection
/// open: its status and body.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(_) => received.push(byte[0]),
            Err(e) => panic!("reading a response head: {e}"),
        }
    }
    let head = String::from_utf8(received).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// A connection that has had one answer and is now idle (keep-alive): the server has accepted
/// it and holds it open.
fn idle_keep_alive(server: &Server) -> TcpStream {
    let mut stream = connect(server);
    stream.write_all(HEALTHZ).unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    stream
}

#[test]
fn a_half_sent_request_head_is_cut_off_after_the_header_timeout() {
    let (_dir, server) = start(&["--header-read-timeout", "1s"]);
    let mut slow = connect(&server);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: keyservice\r\n")
        .unwrap();
    match read_until_closed(&mut slow, GENEROUS) {
        Ending::Closed(sent) => assert!(!sent.contains("200 OK"), "{sent}"),
        Ending::StillOpen(sent) => panic!("still open after {GENEROUS:?}: {sent:?}"),
    }
    // Everyone else is served as before.
    assert_eq!(read_response_to(&server, HEALTHZ).0, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (_dir, server) = start(&["--header-read-timeout", "1s"]);
    let mut idle = idle_keep_alive(&server);
    match read_until_closed(&mut idle, GENEROUS) {
        Ending::Closed(sent) => assert_eq!(sent, ""),
        Ending::StillOpen(sent) => panic!("still open after {GENEROUS:?}: {sent:?}"),
    }
}

#[test]
fn a_body_that_stops_arriving_is_refused_after_the_body_timeout() {
    let (_dir, server) = start(&["--body-read-timeout", "1s", "--header-read-timeout", "1h"]);
    let mut slow = connect(&server);
    let head = format!(
        "POST /v1/keys HTTP/1.1\r\nHost: keyservice\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).unwrap();
    // 10 of the 100 bytes declared, then nothing.
    slow.write_all(br#"{"user_id""#).unwrap();
    let answer = match read_until_closed(&mut slow, GENEROUS) {
        Ending::Closed(answer) => answer,
        Ending::StillOpen(sent) => panic!("still open after {GENEROUS:?}: {sent:?}"),
    };
    // A JSON error like every other (the handler's body reader sees the timeout), then the
    // connection is closed: the rest of the body will not be waited for.
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert!(
        body.contains(r#""error":"request_timeout""#) && body.contains("did not arrive within 1s"),
        "{body}"
    );
}

#[test]
fn sigterm_stops_within_the_grace_period_despite_a_slow_client() {
    let (_dir, mut server) = start(&["--shutdown-grace", "1s", "--header-read-timeout", "1h"]);
    let mut slow = connect(&server);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: keyservice\r\n")
        .unwrap();
    // Connections are accepted in order: once a later one is answered, the slow one is held.
    assert_eq!(read_response_to(&server, HEALTHZ).0, 200);

    let pid = server.proc.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The grace period, and a generous margin for a loaded machine.
    let limit = Duration::from_secs(1 + 10);
    let status =
        poll(limit, Duration::from_millis(100), || server.proc.try_wait()).unwrap_or_else(|| {
            panic!(
                "still running {limit:?} after SIGTERM\n{}",
                server.proc.log_text()
            )
        });
    assert!(status.success(), "{status}\n{}", server.proc.log_text());
    let log = server.proc.log_text();
    assert!(
        log.contains("grace period over") && log.contains("cut=1"),
        "{log}"
    );
    assert!(log.contains("keyservice stopped"), "{log}");
    assert!(matches!(
        read_until_closed(&mut slow, GENEROUS),
        Ending::Closed(_)
    ));
}

#[test]
fn clients_beyond_max_connections_wait_until_one_closes() {
    let (_dir, server) = start(&["--max-connections", "2", "--header-read-timeout", "1h"]);
    let first = idle_keep_alive(&server);
    let _second = idle_keep_alive(&server);

    let (answered, answer) = mpsc::channel();
    let addr = server.addr;
    std::thread::spawn(move || {
        let mut third = TcpStream::connect(addr).unwrap();
        third.write_all(HEALTHZ).unwrap();
        let _ = answered.send(read_response(&mut third));
    });
    // While both slots are held, the third client waits: not accepted, so not answered.
    assert!(
        matches!(
            answer.recv_timeout(Duration::from_secs(3)),
            Err(mpsc::RecvTimeoutError::Timeout)
        ),
        "a third client was answered while --max-connections 2 were open"
    );
    drop(first);
    let (status, _) = answer
        .recv_timeout(GENEROUS)
        .expect("the third client is answered once a connection closed");
    assert_eq!(status, 200);
}

/// `keyservice serve` that must refuse to start: its exit status and stderr.
fn refused_start(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyservice"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database(dir),
        ])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("JWT_SECRET", SECRET)
        .env("KEYSERVICE_ADMIN_TOKEN", ADMIN)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = poll(GENEROUS, Duration::from_millis(100), || {
        child.try_wait().unwrap()
    }) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("`serve {args:?}` with {env:?} started instead of refusing to");
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn an_admin_token_with_surrounding_whitespace_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let padded = format!(" {ADMIN}\n");
    let (status, stderr) = refused_start(&dir, &[], &[("KEYSERVICE_ADMIN_TOKEN", &padded)]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("KEYSERVICE_ADMIN_TOKEN") && stderr.contains("whitespace"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(ADMIN),
        "the token is never printed: {stderr}"
    );
    assert!(
        !dir.path().join("keys.db").exists(),
        "refused before touching the database"
    );
}

#[test]
fn zero_limits_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = refused_start(&dir, &[], &[("KEYSERVICE_MAX_CONNECTIONS", "0")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--max-connections"), "{stderr}");
    for flag in [
        "--header-read-timeout",
        "--body-read-timeout",
        "--shutdown-grace",
    ] {
        let (status, stderr) = refused_start(&dir, &[flag, "0s"], &[]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("greater than zero"),
            "{stderr}"
        );
    }
}

/// A fresh connection's answer to `request`.
fn read_response_to(server: &Server, request: &[u8]) -> (u16, String) {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    read_response(&mut stream)
}
