//! The HTTP server under `keyservice serve`: our own accept loop over hyper rather than
//! `axum::serve`, which has no deadline for request heads or bodies, no cap on open connections,
//! and a graceful stop that waits for slow clients forever.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::{BoxError, Router};
use hyper::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, Sleep};
use tower::ServiceBuilder;

/// What a client may take of the server, and how long a stop may take.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// For a request head to arrive complete. hyper runs this timer whenever a connection waits
    /// for a head, so it also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// For a request body to arrive complete, counted from its head.
    pub body_read_timeout: Duration,
    /// Connections open at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// After the stop signal, how long open connections may take to finish before they are cut.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets open
/// connections finish their requests for at most the grace period, and cuts the rest.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let body_read_timeout = limits.body_read_timeout;
    let service = ServiceBuilder::new()
        .map_request(move |request: Request<Incoming>| {
            request.map(|body| BodyDeadline::new(body, body_read_timeout))
        })
        .service(router);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, slot) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept_within_cap(&listener, &slots) => accepted,
        };
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            // Timeouts, resets and malformed requests end connections all the time.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
        reap(&mut connections);
    }
    // From here the kernel refuses new clients.
    drop(listener);
    finish_or_cut(graceful, connections, limits.shutdown_grace).await;
}

/// Tells every connection to finish its current request and close, waits at most `grace` for
/// them, then cuts the rest.
async fn finish_or_cut(graceful: GracefulShutdown, mut connections: JoinSet<()>, grace: Duration) {
    reap(&mut connections);
    let grace_text = humantime::format_duration(grace);
    tracing::info!(
        open = connections.len(),
        grace = %grace_text,
        "stopped accepting; letting open connections finish"
    );
    let finished = tokio::time::timeout(grace, async {
        graceful.shutdown().await;
        while let Some(finished) = connections.join_next().await {
            log_panic(finished);
        }
    })
    .await;
    if finished.is_err() {
        reap(&mut connections);
        let cut = connections.len();
        connections.shutdown().await;
        tracing::warn!(cut, grace = %grace_text, "grace period over: cut the connections still open");
    }
}

/// Waits for a free slot, then for a client. At the cap nothing is accepted, so further clients
/// wait in the kernel's backlog rather than hold a socket and memory of ours.
async fn accept_within_cap(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    // The semaphore is never closed: acquiring can only wait.
    let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (stream, slot),
            Err(e) => accept_failed(e).await,
        }
    }
}

/// As hyper and axum do: a client that gave up before we accepted it is no error; anything
/// else (out of file descriptors, say) is logged and retried after a pause rather than in a
/// busy loop.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Collects finished connection tasks, so the set holds only open connections.
fn reap(connections: &mut JoinSet<()>) {
    while let Some(finished) = connections.try_join_next() {
        log_panic(finished);
    }
}

fn log_panic(finished: Result<(), JoinError>) {
    if let Err(e) = finished
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection task panicked");
    }
}

/// A request body that must arrive complete within a time counted from the request's head. A
/// client that declares a body and then stops sending it, or trickles it, is answered with an
/// error instead of holding a connection. (tower-http's `RequestBodyTimeout` restarts its timer
/// with every chunk, so a trickle would never end.)
pub struct BodyDeadline<B> {
    body: B,
    timeout: Duration,
    head_received: Instant,
    /// Armed the first time the body is waited for: most requests have none.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> BodyDeadline<B> {
    pub fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            head_received: Instant::now(),
            timer: None,
        }
    }
}

/// The error a [`BodyDeadline`] body ends with; the body's reader (axum's `Json`) sees it in
/// its error's source chain.
#[derive(Debug, Error)]
#[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
pub struct BodyReadTimeout(pub Duration);

impl<B> Body for BodyDeadline<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        // What has arrived is delivered even when the deadline has passed meanwhile.
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let (timeout, head_received) = (this.timeout, this.head_received);
        // `sleep` saturates where an `Instant` sum could overflow.
        let timer = this.timer.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep(
                timeout.saturating_sub(head_received.elapsed()),
            ))
        });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyReadTimeout(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::extract::rejection::JsonRejection;
    use axum::routing::post;
    use http_body_util::{BodyExt, Full};
    use std::convert::Infallible;
    use tower::ServiceExt;

    /// One chunk, then nothing more, ever: a client that stopped sending.
    struct StalledBody {
        sent: bool,
    }

    impl Body for StalledBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.sent {
                return Poll::Pending;
            }
            self.sent = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"user\"")))))
        }
    }

    #[tokio::test]
    async fn a_stalled_body_ends_with_the_timeout_error() {
        let body = BodyDeadline::new(StalledBody { sent: false }, Duration::from_millis(50));
        let error = body.collect().await.unwrap_err();
        let timeout = error.downcast_ref::<BodyReadTimeout>().unwrap();
        assert_eq!(timeout.0, Duration::from_millis(50));
        assert_eq!(
            error.to_string(),
            "the request body did not arrive within 50ms"
        );
    }

    /// What lets the API's error type tell a body timeout from a malformed body.
    #[tokio::test]
    async fn a_json_reader_finds_the_timeout_in_its_rejection() {
        async fn read(body: Result<axum::Json<serde_json::Value>, JsonRejection>) -> String {
            let Err(rejection) = body else {
                return "read".to_owned();
            };
            let mut source = std::error::Error::source(&rejection);
            while let Some(cause) = source {
                if cause.is::<BodyReadTimeout>() {
                    return "timed out".to_owned();
                }
                source = cause.source();
            }
            format!("other rejection: {rejection}")
        }
        let router = Router::new().route("/", post(read));
        let body = BodyDeadline::new(StalledBody { sent: false }, Duration::from_millis(50));
        let request = Request::post("/")
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(text, Bytes::from_static(b"timed out"));
    }

    #[tokio::test]
    async fn a_body_that_has_arrived_is_delivered_even_past_the_deadline() {
        let body = BodyDeadline::new(Full::new(Bytes::from_static(b"{}")), Duration::ZERO);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"{}"));
    }
}
