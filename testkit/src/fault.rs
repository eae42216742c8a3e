//! A fault server: stands in for keyservice to make the revocation check fail, or to answer it
//! the way a test needs (a status, a `Cache-Control`, late, or held until released).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::loopback::{accept_until, read_head};

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answers at once with this status and an empty body.
    Status(u16),
    /// Answers 200 (the key is fine), but only after this long.
    SlowOk(Duration),
    /// Answers at once with this status and this `Cache-Control` header.
    Cached(u16, &'static str),
    /// Answers this status (no `Cache-Control`) once [`FaultServer::release`] is called, or
    /// after [`HOLD_LIMIT`] so that a failing test cannot hang: a callout held out for as long
    /// as the test needs.
    Held(u16),
}

/// The longest a [`Fault::Held`] answer waits for its release.
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// The gate that [`Fault::Held`] answers wait on.
#[derive(Default)]
struct Hold {
    released: Mutex<bool>,
    changed: Condvar,
}

impl Hold {
    fn wait(&self) {
        let released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(released, HOLD_LIMIT, |released| !*released);
    }

    fn set(&self, released: bool) {
        *self.released.lock().unwrap_or_else(|e| e.into_inner()) = released;
        self.changed.notify_all();
    }
}

/// A tiny HTTP/1.1 server on a loopback port. Every connection gets one response and is closed.
/// `close` stops listening, so that the port refuses connections (keyservice down).
pub struct FaultServer {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
    hold: Arc<Hold>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault server");
        let addr = listener.local_addr().expect("fault server address");
        let fault = Arc::new(Mutex::new(fault));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(Hold::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fault, requests, hold) = (fault.clone(), requests.clone(), hold.clone());
            accept_until(listener, stop.clone(), move |stream| {
                // The fault when the connection comes, whatever is set while it is answered.
                let fault = *fault.lock().unwrap_or_else(|e| e.into_inner());
                let (requests, hold) = (requests.clone(), hold.clone());
                thread::spawn(move || serve_fault(stream, fault, &requests, &hold));
            })
        };
        FaultServer {
            addr,
            fault,
            requests,
            hold,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Lets every [`Fault::Held`] answer go, those waiting and those to come (until
    /// [`FaultServer::hold_again`]).
    pub fn release(&self) {
        self.hold.set(true);
    }

    /// [`Fault::Held`] answers wait again, from now on, until the next `release`.
    pub fn hold_again(&self) {
        self.hold.set(false);
    }

    /// How many requests it has received so far.
    pub fn request_count(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Stops listening: connections to `addr` are refused from now on.
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// The requests received so far, as `"METHOD PATH host=AUTHORITY"`.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.release();
        self.close();
    }
}

fn serve_fault(mut stream: TcpStream, fault: Fault, requests: &Mutex<Vec<String>>, hold: &Hold) {
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{} {} host={}", head.method, head.path, head.host));
    let (status, cache_control) = match fault {
        Fault::Status(status) => (status, None),
        Fault::SlowOk(delay) => {
            thread::sleep(delay);
            (200, None)
        }
        Fault::Cached(status, cache_control) => (status, Some(cache_control)),
        Fault::Held(status) => {
            hold.wait();
            (status, None)
        }
    };
    let cache_control = cache_control
        .map(|value| format!("cache-control: {value}\r\n"))
        .unwrap_or_default();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Fault\r\n{cache_control}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = stream.flush();
}
