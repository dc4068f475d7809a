//! One held notification stream (`GET /api/client/events`), as small as it can be
//! (`docs/operating.md#notification-streams`): a struct of the stream's receivers and the
//! events still to send, and [`EventStream::next`], which waits for the next event. No boxed
//! body, no stream combinators, no per-stream buffer: the connection front
//! (`crate::front`) takes the stream out of the routed answer ([`Held`]) and holds it in a
//! task of its own, so a waiting stream costs that task (its socket, this struct and the
//! futures `next` waits on), its socket's registration and the client's id.
//!
//! A connection that hyper serves instead (HTTP/1.0, a head the front hands over) reads the
//! same events through the answer's body ([`EventStream::into_response`]).
//!
//! The bytes are those of a `text/event-stream` (one event per chunk): `event: hello` with
//! the caller's [`cascade_proto::Hello`], the replayed notice if any, then `event: notify`
//! with the notice's id for each notice, and a comment line (`:`) after
//! [`KEEP_ALIVE`] without an event so proxies and clients see the stream alive.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::notify::{Rendered, Role};
use crate::state::AppState;

/// A stream without an event for this long gets a comment line (what axum's `Sse` keep-alive
/// sent before: `:` and an empty line, 15 s after the last event).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The comment that keeps a quiet stream alive.
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// One client's notification stream.
pub struct EventStream {
    /// Events to send before waiting: the `hello`, then the replayed notice, if any.
    first: Option<Bytes>,
    replay: Option<Bytes>,
    /// Notices for the client's role.
    notices: broadcast::Receiver<Arc<Rendered>>,
    /// Ids of deleted clients: the stream ends when its own appears.
    forgotten: broadcast::Receiver<Arc<str>>,
    /// Flips when the server stops: the stream ends.
    shutdown: watch::Receiver<bool>,
    /// The client's id.
    me: Arc<str>,
    role: Role,
    /// The rollouts' ring scopes and the counters.
    state: AppState,
    /// When the stream, quiet until then, gets its keep-alive comment.
    quiet_until: Instant,
}

/// The parts of a stream ([`EventStream::new`]).
pub struct Parts {
    /// The `hello` event's data (JSON).
    pub hello: String,
    /// The notice to replay first, if any (already counted as delivered).
    pub replay: Option<Arc<Rendered>>,
    /// The receiver of the notices for the client's role, subscribed before the replay was
    /// looked up.
    pub notices: broadcast::Receiver<Arc<Rendered>>,
    /// The receiver of deleted clients' ids.
    pub forgotten: broadcast::Receiver<Arc<str>>,
    /// The server's shutdown flag.
    pub shutdown: watch::Receiver<bool>,
    /// The client's id.
    pub me: Arc<str>,
    /// The client's role.
    pub role: Role,
}

impl EventStream {
    /// A stream that sends `hello`, the replay, then the notices that reach the client.
    pub fn new(parts: Parts, state: AppState) -> Self {
        EventStream {
            first: Some(event("hello", None, &parts.hello)),
            replay: parts.replay.as_deref().map(notify_event),
            notices: parts.notices,
            forgotten: parts.forgotten,
            shutdown: parts.shutdown,
            me: parts.me,
            role: parts.role,
            state,
            quiet_until: Instant::now() + KEEP_ALIVE,
        }
    }

    /// The next event's bytes; `None` when the stream ends (the server stops, the client was
    /// deleted, the notices' channel closed).
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take().or_else(|| self.replay.take()) {
            self.quiet_until = Instant::now() + KEEP_ALIVE;
            return Some(first);
        }
        loop {
            let got = tokio::select! {
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
                who = self.forgotten.recv() => match who {
                    Ok(who) if who == self.me => {
                        tracing::info!(client = %self.me, "event stream closed: the client was deleted");
                        return None;
                    }
                    Err(RecvError::Closed) => return None,
                    _ => continue,
                },
                () = tokio::time::sleep_until(self.quiet_until) => {
                    self.quiet_until = Instant::now() + KEEP_ALIVE;
                    return Some(Bytes::from_static(KEEP_ALIVE_COMMENT));
                }
                got = self.notices.recv() => got,
            };
            match got {
                // A notice a rollout issued for one ring reaches that ring only.
                Ok(n) if !self.state.notifier.reaches(n.id, &self.me) => {}
                Ok(n) => {
                    self.state.metrics.delivered(self.role);
                    self.quiet_until = Instant::now() + KEEP_ALIVE;
                    return Some(notify_event(&n));
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The `200` answer: `text/event-stream`, its body reading this stream, and the stream
    /// itself in the answer's extensions ([`Held`]) for the connection front to take.
    pub fn into_response(self) -> Response {
        let slot = Held(Arc::new(Mutex::new(Some(self))));
        let taken = slot.clone();
        let body = Body::from_stream(futures::stream::unfold(
            (taken, None::<EventStream>),
            |(slot, held)| async move {
                // Taken at the first read unless the front took it (then the body is empty).
                let mut stream = match held {
                    Some(s) => s,
                    None => slot.take()?,
                };
                let bytes = stream.next().await?;
                Some((Ok::<_, Infallible>(bytes), (slot, Some(stream))))
            },
        ));
        let mut resp = (
            [
                (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
                (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response();
        resp.extensions_mut().insert(slot);
        resp
    }
}

/// A routed answer's event stream, for the connection front to hold itself.
#[derive(Clone)]
pub struct Held(Arc<Mutex<Option<EventStream>>>);

impl Held {
    /// The stream, unless it was taken already.
    pub fn take(&self) -> Option<EventStream> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// `event: notify` with the notice's id as the event id (what the client sends back as
/// `Last-Event-ID`).
fn notify_event(n: &Rendered) -> Bytes {
    event("notify", Some(n.id), &n.json)
}

/// One event: its name, its id if any, its data (one line: compact JSON), an empty line.
fn event(name: &str, id: Option<i64>, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(name.len() + data.len() + 40);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.to_string().as_bytes());
        out.push(b'\n');
    }
    // A data line per line of the data, as the event-stream format wants (JSON from
    // `serde_json::to_string` has none, but the format stays right whatever comes).
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What axum's `Sse` sends for one event.
    async fn axum_bytes(e: axum::response::sse::Event) -> Bytes {
        let sse =
            axum::response::sse::Sse::new(futures::stream::once(
                async move { Ok::<_, Infallible>(e) },
            ));
        axum::body::to_bytes(sse.into_response().into_body(), 1 << 16)
            .await
            .unwrap()
    }

    // The bytes are those axum's `Sse` sent for the same events before.
    #[tokio::test]
    async fn events_are_written_as_axum_wrote_them() {
        use axum::response::sse::Event;
        let json = r#"{"id":7,"stage":"agents"}"#;
        assert_eq!(
            event("notify", Some(7), json),
            axum_bytes(Event::default().event("notify").id("7").data(json)).await
        );
        assert_eq!(
            event("hello", None, "{}"),
            axum_bytes(Event::default().event("hello").data("{}")).await
        );
        assert_eq!(
            event("x", None, "a\nb"),
            axum_bytes(Event::default().event("x").data("a\nb")).await
        );
        assert_eq!(
            Bytes::from_static(KEEP_ALIVE_COMMENT),
            axum_bytes(Event::DEFAULT_KEEP_ALIVE).await
        );
    }
}
