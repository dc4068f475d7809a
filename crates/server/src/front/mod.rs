//! The connection front (`docs/architecture.md#serving-the-repository`): every accepted
//! connection, plain or TLS, starts here. It reads request heads itself and answers the two
//! kinds of request that make the volume without the HTTP library's per-connection machinery:
//!
//! - `GET`/`HEAD /repo/…` of a whole regular file ([`crate::repo::whole`], the same rules as
//!   the routed answer): the head written by hand, the bytes from the small-file cache or, for
//!   a large file on plain HTTP, by `sendfile(2)` from the descriptor that was `fstat`ed (the
//!   kernel copies from the page cache to the socket; nothing passes through user space). No
//!   routing, no middleware, two counters and a latency slot ([`Metrics::repo_answered`]):
//!   what nginx does for a static file.
//! - `GET /api/client/events`: the request goes through the router like any other (so
//!   authentication, limits and metrics are the router's), and the stream it answers is
//!   written here, chunk by chunk, holding no read or write buffer while it waits for the
//!   next notice: the connection and the stream ([`crate::events::EventStream`]) move into a
//!   task of their own, so a held stream costs that task, its socket and the stream's own
//!   state (`docs/operating.md#notification-streams`), not the two 8 KiB buffers an HTTP/1
//!   connection keeps nor the size of this module's future for every other request.
//!
//! Anything else (another path, a `Range`, a body, `Expect`, HTTP/1.0, a head the parser
//! does not take, a file the fast path does not answer) hands the connection, with the bytes
//! already read, to hyper and the router for the rest of its life: behaviour there is
//! exactly the routed server's. The header-read timeout holds here too (idle and slow
//! heads are closed); a head that outgrows [`HEAD_MAX`](head::HEAD_MAX) is handed over and
//! hyper's own timer and size limit take it from there.
//!
//! Reading the head, writing response heads (with the cached `Date`), `sendfile` and the
//! open-files limit come from `cascade-front`, shared with the relay's front door.
//!
//! The front runs on whichever runtime accepted the connection ([`crate::accept`]): the
//! server's runtime, or an accepting thread's own, whose router then runs each request on the
//! server's runtime.
//!
//! The parts: [`conn`] (the connections served and how a file is written to each),
//! [`head`] (reading a request head and deciding who answers it), [`repo_answer`] (a
//! repository file written by hand), [`stream`] (routed answers written here and held
//! notification streams), [`hand_over`](mod@hand_over) (the rest of a connection given to
//! hyper).

mod conn;
mod hand_over;
mod head;
mod repo_answer;
mod stream;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt as _;
use tokio::sync::{watch, OwnedSemaphorePermit};

use crate::limits::ServeLimits;
use crate::metrics::Metrics;
use crate::repo::Served;

pub(crate) use conn::{copy_file, Conn};
use hand_over::hand_over;
use head::{read_head, stopping, Ask, Head, HeadWaits};
use repo_answer::answer_repo;
use stream::{answer_streamed, hold};

/// What the front needs besides the router.
#[derive(Debug)]
pub(crate) struct Front {
    /// The repository served at `/repo/`.
    pub served: Served,
    /// The server's counters.
    pub metrics: Arc<Metrics>,
    /// Timeouts and caps.
    pub limits: ServeLimits,
    /// With per-thread accept ([`crate::accept`]): where a connection handed over to hyper
    /// goes to live the rest of its life; `None`: it stays where it is.
    pub home: Option<Home>,
}

/// The server's runtime and its router, for connections handed over from an accepting
/// thread.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    /// The server's runtime.
    pub runtime: tokio::runtime::Handle,
    /// The router, run there directly.
    pub app: axum::Router,
}

/// Raises the soft open-files limit to the hard one ([`cascade_front::raise_open_files`]:
/// every held stream and every connection is a descriptor); warns when even the hard limit
/// is below `want`. Returns the limit.
pub(crate) fn raise_open_files(want: u64) -> Option<u64> {
    let limit = cascade_front::raise_open_files();
    if let Some(l) = limit.filter(|l| *l < want) {
        tracing::warn!(
            limit = l,
            want,
            "the open-files limit is below --max-connections plus room for files; raise it \
             (ulimit -n, LimitNOFILE=): docs/operating.md#notification-streams"
        );
    }
    limit
}

/// Serves one connection until it ends (see the module documentation), holding `slot` (its
/// place under `--max-connections`) as long as the connection lives.
pub(crate) async fn serve<I: Conn>(
    mut io: I,
    front: Arc<Front>,
    app: axum::Router,
    stop: watch::Receiver<bool>,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let mut buf: Vec<u8> = Vec::new();
    if *stop.borrow() {
        return;
    }
    let mut waits = HeadWaits::new(&stop, front.limits.header_read_timeout);
    loop {
        if stopping(&stop) {
            return;
        }
        match read_head(&mut io, &mut buf, &front.limits, &mut waits, &stop, peer).await {
            Head::Close => return,
            Head::Complete(
                n,
                Ask::Repo {
                    path,
                    head,
                    if_none_match,
                    close,
                },
            ) => {
                let started = Instant::now();
                let Some(answer) =
                    crate::repo::whole(&front.served, &path, if_none_match.as_deref())
                else {
                    break;
                };
                buf.drain(..n);
                if let Err(e) =
                    answer_repo(&mut io, answer, head, close, &front.metrics, started).await
                {
                    tracing::debug!(error = %e, %peer, "connection ended");
                    return;
                }
                if close {
                    let _ = io.shutdown().await;
                    return;
                }
            }
            Head::Complete(_, Ask::Events(req)) => {
                // The head is no longer needed: a held stream keeps no buffer.
                drop(std::mem::take(&mut buf));
                match answer_streamed(&mut io, app, *req).await {
                    // Held in a task of its own, sized for holding alone: this one's
                    // future is sized for every kind of request.
                    Ok(Some(events)) => {
                        tokio::spawn(hold(io, events, peer, slot));
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, %peer, "event stream ended"),
                }
                let _ = io.shutdown().await;
                return;
            }
            Head::HandOver | Head::Complete(_, Ask::Other) => break,
        }
    }
    if let Some(home) = &front.home {
        // From an accepting thread: the rest of the connection's life on the server's
        // runtime, with the router run there directly (`crate::accept`).
        match io.rehome(&home.runtime) {
            Ok(()) => {
                let (limits, app) = (front.limits, home.app.clone());
                home.runtime.spawn(async move {
                    hand_over(io, buf, limits, app, stop, peer).await;
                    drop(slot);
                });
            }
            Err(e) => tracing::debug!(error = %e, %peer, "connection not moved; closed"),
        }
        return;
    }
    hand_over(io, buf, front.limits, app, stop, peer).await;
    drop(slot);
}
