//! A few fixed pages on a loopback port, for a browser to load: a test's own page, or another
//! origin's (a cross-site form).

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::loopback::{accept_until, read_head};

/// A page: its content type and body.
#[derive(Clone)]
pub struct Page {
    pub content_type: &'static str,
    pub body: String,
}

impl Page {
    pub fn html(body: impl Into<String>) -> Page {
        Page {
            content_type: "text/html; charset=utf-8",
            body: body.into(),
        }
    }

    pub fn javascript(body: impl Into<String>) -> Page {
        Page {
            content_type: "text/javascript; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Serves `GET path` with the page of that path (404 for others) until dropped.
pub struct StaticSite {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticSite {
    pub fn start(pages: &[(&str, Page)]) -> StaticSite {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a static site");
        let addr = listener.local_addr().expect("a static site's address");
        let pages: Arc<HashMap<String, Page>> = Arc::new(
            pages
                .iter()
                .map(|(path, page)| ((*path).to_owned(), page.clone()))
                .collect(),
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = requests.clone();
            accept_until(listener, stop.clone(), move |stream| {
                let (pages, requests) = (pages.clone(), requests.clone());
                thread::spawn(move || serve(stream, &pages, &requests));
            })
        };
        StaticSite {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (an origin).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// The requests so far, as `"METHOD PATH"`.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream, pages: &HashMap<String, Page>, requests: &Mutex<Vec<String>>) {
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{} {}", head.method, head.path));
    let path = head.path.split('?').next().unwrap_or_default();
    let (status, page) = match pages.get(path) {
        Some(page) if head.method == "GET" => ("200 OK", page.clone()),
        _ => (
            "404 Not Found",
            Page {
                content_type: "text/plain",
                body: "not found".to_owned(),
            },
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\n\
         connection: close\r\n\r\n{}",
        page.content_type,
        page.body.len(),
        page.body
    );
    let _ = stream.write_all(response.as_bytes());
}
