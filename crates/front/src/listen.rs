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

/// [`listen`], with `SO_REUSEPORT` on: several sockets of this process (of this user) may
/// listen on `addr` at once, each with its own queue of [`BACKLOG`], and the kernel spreads
/// new connections over them by a hash of their addresses and ports (the server's
/// per-thread accept, `docs/operating.md#accept-per-thread`). Every socket of such a group
/// must be bound this way, the first one included; bind the first to port 0 and the others to
/// its `local_addr`. Must run inside the tokio runtime that is to serve the socket.
///
/// # Errors
/// Creating, binding or listening on the socket; binding fails with `EADDRINUSE` when
/// `addr` is held by a socket bound without `SO_REUSEPORT`.
#[cfg(unix)]
pub fn listen_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
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

    // Four sockets share one port; connections from many source ports reach more than one of
    // them, and a socket bound without `SO_REUSEPORT` cannot join.
    #[cfg(unix)]
    #[tokio::test]
    async fn reuseport_sockets_share_a_port_and_its_connections() {
        let first = listen_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let mut all = vec![first];
        for _ in 0..3 {
            all.push(listen_reuseport(addr).unwrap());
        }
        assert!(
            listen(addr).is_err(),
            "a plain socket joined a reuseport group"
        );
        let mut clients = Vec::new();
        for _ in 0..64 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut got = vec![0usize; all.len()];
        let mut total = 0;
        while total < clients.len() {
            for (i, l) in all.iter().enumerate() {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(20), l.accept()).await
                {
                    got[i] += 1;
                    total += 1;
                }
            }
        }
        assert!(
            got.iter().filter(|n| **n > 0).count() > 1,
            "every connection on one socket: {got:?}"
        );
    }
}
