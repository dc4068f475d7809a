//! Routed answers written by the front: the notification stream's head, then the stream
//! held in a task of its own (`docs/operating.md#notification-streams`), or any other
//! answer's body chunk by chunk.

use std::io;
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::Request;
use cascade_front::ResponseHead;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::OwnedSemaphorePermit;

use crate::events::EventStream;

use super::Conn;

/// Routes `req` and writes its answer: the head, then, for a notification stream
/// ([`crate::events::Held`]), the stream to hold ([`hold`]); for any other answer its body,
/// chunk by chunk until it ends or the peer goes away. The connection closes after it.
pub(super) async fn answer_streamed<I: Conn>(
    io: &mut I,
    app: axum::Router,
    req: Request<Body>,
) -> io::Result<Option<EventStream>> {
    use tower::ServiceExt as _;
    let resp = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let held = parts
        .extensions
        .get::<crate::events::Held>()
        .and_then(crate::events::Held::take);
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    let mut response = ResponseHead::new(parts.status);
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "date"
        ) {
            continue;
        }
        response.header(name.as_str(), value.as_bytes());
    }
    match exact {
        Some(n) => response.content_length(n),
        None => response.header("transfer-encoding", "chunked"),
    };
    response.header("connection", "close").date();
    let out = response.finish();
    io.write_all(&out).await?;
    io.flush().await?;
    drop(out);
    if held.is_some() {
        return Ok(held);
    }
    let mut frames = body.into_data_stream();
    // Anything the peer sends (or its close) ends the stream: a client of an event stream
    // only listens.
    let mut probe = [0u8; 1];
    loop {
        let next = tokio::select! {
            f = frames.next() => f,
            _ = io.read(&mut probe) => return Ok(None),
        };
        let Some(frame) = next else { break };
        let data = frame.map_err(io::Error::other)?;
        if data.is_empty() {
            continue;
        }
        if exact.is_some() {
            io.write_all(&data).await?;
            io.flush().await?;
        } else {
            write_chunk(io, &data).await?;
        }
    }
    if exact.is_none() {
        io.write_all(b"0\r\n\r\n").await?;
        io.flush().await?;
    }
    Ok(None)
}

/// Writes `data` as one chunk of a chunked body.
async fn write_chunk<I: Conn>(io: &mut I, data: &[u8]) -> io::Result<()> {
    let mut chunk = Vec::with_capacity(data.len() + 16);
    chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    io.write_all(&chunk).await?;
    io.flush().await
}

/// Holds a notification stream whose head is written: each event a chunk, until the stream
/// ends (then the last chunk) or the peer sends anything or goes away (a client of an event
/// stream only listens). Runs as its own task, so what a held stream costs is this future:
/// the connection, the stream's struct and what its `next` waits on
/// (`docs/operating.md#notification-streams`).
///
/// A function returning an `async move` block rather than an `async fn`: the block stores
/// what it captures once, where an `async fn`'s future keeps its arguments and the body's
/// copies of them side by side (a TLS connection's state is a few KiB).
pub(super) fn hold<I: Conn>(
    io: I,
    events: EventStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()> + Send {
    let mut conn = Held { io, events, slot };
    async move {
        let mut probe = [0u8; 1];
        let ended = loop {
            let next = tokio::select! {
                n = conn.events.next() => n,
                _ = conn.io.read(&mut probe) => break Ok(()),
            };
            let Some(data) = next else {
                break async {
                    conn.io.write_all(b"0\r\n\r\n").await?;
                    conn.io.flush().await
                }
                .await;
            };
            if let Err(e) = write_chunk(&mut conn.io, &data).await {
                break Err(e);
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, %peer, "event stream ended");
        }
        let _ = conn.io.shutdown().await;
        drop(conn.slot);
    }
}

/// What a held stream's task owns.
struct Held<I> {
    io: I,
    events: EventStream,
    /// Its place under `--max-connections`, given back when the stream ends.
    slot: OwnedSemaphorePermit,
}
