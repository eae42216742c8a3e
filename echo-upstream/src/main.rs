//! echo-upstream: the upstream behind Envoy in keygate's rig and integration tests.
//!
//! Answers every request (any method, any path) with `200` and a JSON echo of what reached it:
//! `{"method": "GET", "path": "/a?b=c", "headers": {"x-user-id": "u1", ...}, "body_bytes": 0}`.
//! Header names are lowercase; repeated headers are joined with `", "`. The body is read to its
//! end (answering before that would make the proxy see a reset upload) and only its size echoed. The tests read the echo to see exactly
//! which headers the filter let through, added or removed.

use std::io::Write;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use clap::Parser;
use serde_json::{Map, Value, json};

#[derive(Debug, Parser)]
#[command(version, about = "Answers every HTTP request with a JSON echo of it")]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

/// Bodies above this are not read to the end; their size is echoed as `null`.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

async fn echo(request: Request) -> Json<Value> {
    let (parts, body) = request.into_parts();
    let body_bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .ok()
        .map(|bytes| bytes.len());
    let request = Request::from_parts(parts, ());
    let mut headers = Map::new();
    for name in request.headers().keys() {
        let joined = request
            .headers()
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    Json(json!({
        "method": request.method().as_str(),
        "path": path,
        "headers": headers,
        "body_bytes": body_bytes,
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    // The one stdout line: the rig and the tests read it to learn the bound port.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    axum::serve(listener, Router::new().fallback(echo)).await
}
