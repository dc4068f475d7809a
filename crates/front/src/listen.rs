//! Listening sockets with a backlog sized for bursts (`docs/operating.md#listen-backlog`).
//!
//! `tokio::net::TcpListener::bind` asks the kernel for a queue of 128 connections not yet
//! accepted (`SOMAXCONN` as the `libc` crate spells it). When a notify sends hundreds of
//! clients to a server or a relay at once and the accept loop is busy for a moment, the
//! queue fills and the kernel drops the next SYNs: each of those clients waits out the 1 s
//! SYN retransmission timeout. nginx asks for 511; the fronts ask for [`BACKLOG`] (the
//! kernel caps it at `net.core.somaxconn`, 4,096 by default since Linux 5.4).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may hold for a listener before they are accepted.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (address reuse on, as `TcpListener::bind` sets it on Unix) and listens with
/// a queue of [`BACKLOG`] connections. Must run inside a tokio runtime.
///
/// # Errors
/// Creating, binding or listening on the socket.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // 300 clients connect at once to a listener that accepts none of them: the kernel
    // establishes every connection (a queue of 128 holds 129 and drops the others' SYNs, and
    // their connects never complete while nothing is accepted).
    #[tokio::test]
    async fn a_burst_larger_than_128_is_queued() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects: Vec<_> = (0..300)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::net::TcpStream::connect(addr),
                ))
            })
            .collect();
        let mut streams = Vec::new();
        for c in connects {
            if let Ok(Ok(s)) = c.await.unwrap() {
                streams.push(s);
            }
        }
        assert_eq!(streams.len(), 300, "connections queued without an accept");
        drop(listener);
    }
}
