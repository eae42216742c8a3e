use std::net::{SocketAddr, TcpListener};

/// A loopback port nothing listens on (the OS's pick, released at once): for a server to take,
/// or to stand for a service that is down.
pub fn free_port() -> u16 {
    closed_port().port()
}

/// [`free_port`] as an address on 127.0.0.1.
pub fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("picking a free loopback port")
}
