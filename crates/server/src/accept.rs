//! How the server accepts connections (`docs/operating.md#accept-per-thread`,
//! `docs/architecture.md#serving-the-repository`): [`Accept::Shared`] or [`Accept::PerThread`].
//!
//! **Shared** (the default): one listening socket, one accept loop on the server's tokio
//! runtime, and every connection a task of that runtime (its worker threads steal tasks from
//! one another and share one I/O driver).
//!
//! **Per thread**: N threads, each with its own current-thread tokio runtime and its own
//! listening socket on the same address (`SO_REUSEPORT`, [`cascade_front::listen_reuseport`],
//! each with the listen backlog of `docs/operating.md#listen-backlog`); the kernel spreads new
//! connections over the sockets, and a connection lives on the thread that accepted it: the
//! connection front ([`crate::front`]), TLS, `/repo/` answers (`sendfile`, the thread's own
//! small-file copies and counter shard), hyper's HTTP/1 for handed-over connections and held
//! event streams all run there, with no wake-up or task moved between threads — nginx's
//! worker processes, as threads.
//!
//! What is *not* run on those threads: the router. Its handlers use the database pool
//! (`sqlx`: a PostgreSQL connection's socket belongs to the runtime that opened it, and the
//! pool opens connections on whichever runtime asks first), spawn tasks that must outlive a
//! connection (group commit, notifications) and keep state bound to the server's runtime.
//! So in this mode the router is wrapped ([`OnRuntime`]): every routed request (`/api/…`, the
//! console, `/metrics`, a `/repo/` request the front hands over) is spawned as a task on the
//! server's runtime, whose answer comes back to the accepting thread to be written; the
//! request body streams to it and the response body from it through hyper's channels, which
//! wake across runtimes. The split is at the request, not the connection: sockets never move
//! between runtimes (a tokio socket is registered with one runtime's I/O driver), and a
//! request dropped by its connection (the peer went away) aborts its task, as dropping the
//! future does in shared mode.
//!
//! Both modes keep the same rules: at most `--max-connections` connections served at once,
//! counted across all threads by one semaphore (per thread, a connection is accepted and then
//! waits for a place: a place is never held by a thread that has no connection, and each
//! thread holds at most one accepted connection that waits); on stop, every listener closes,
//! every connection finishes its request in flight (held streams end), and the server waits
//! for all of them on every thread before it returns.

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Request;
use axum::response::{IntoResponse as _, Response};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::front::{self, Front};
use crate::ServerError;

/// How the server accepts connections (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accept {
    /// One listener, one accept loop on the server's runtime (`--accept shared`).
    #[default]
    Shared,
    /// This many threads, each with its own `SO_REUSEPORT` listener and current-thread runtime
    /// (`--accept per-thread`).
    PerThread {
        /// The number of accepting threads.
        threads: NonZeroUsize,
    },
}

/// Binds `addr` for a server that accepts by `accept`: with [`Accept::PerThread`] the
/// socket has `SO_REUSEPORT` (so each thread's socket can join it); otherwise a plain
/// listener. Both with the listen backlog of `docs/operating.md#listen-backlog`. Must run
/// inside a tokio runtime.
///
/// # Errors
/// Creating, binding or listening on the socket.
pub fn listen(addr: std::net::SocketAddr, accept: Accept) -> std::io::Result<TcpListener> {
    match accept {
        Accept::Shared => cascade_front::listen(addr),
        #[cfg(unix)]
        Accept::PerThread { .. } => cascade_front::listen_reuseport(addr),
        #[cfg(not(unix))]
        Accept::PerThread { .. } => cascade_front::listen(addr),
    }
}

/// What every accept loop shares.
#[derive(Clone)]
struct Accepting {
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    front: Arc<Front>,
    /// One place per connection served (`--max-connections`), shared by every thread.
    slots: Arc<Semaphore>,
    /// Flips to `true` when the server stops: connections finish their request in flight.
    stop: watch::Receiver<bool>,
}

/// Serves on `listener` by `accept` until `shutdown` completes, then stops accepting, asks
/// every connection to finish its request in flight and waits for all of them.
pub(crate) async fn serve(
    listener: TcpListener,
    accept: Accept,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    front: Arc<Front>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let max = front.limits.max_connections.max(1);
    let (stop_tx, stop) = watch::channel(false);
    let accepting = Accepting {
        acceptor,
        app,
        front,
        slots: Arc::new(Semaphore::new(max)),
        stop,
    };
    let served = match accept {
        Accept::Shared => {
            accepting.front.metrics.count_accepted(1);
            accept_until(listener, 0, &accepting, Order::PlaceFirst, shutdown)
                .await
                .map(|()| Threads::default())
        }
        Accept::PerThread { threads } => per_thread(listener, threads, &accepting, shutdown).await,
    };
    let _ = stop_tx.send(true);
    // Every connection holds a place: when all are back, all connections have ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = accepting.slots.acquire_many(all).await;
    served?.finish().await;
    Ok(())
}

/// Threads to wait for once every connection has ended.
#[derive(Default)]
struct Threads {
    /// Tells the threads that they may end their runtimes.
    done: Option<watch::Sender<bool>>,
    /// Each thread's end (sent after its runtime is dropped).
    ended: Vec<tokio::sync::oneshot::Receiver<()>>,
}

impl Threads {
    /// Lets the threads end and waits until they have.
    async fn finish(self) {
        if let Some(done) = self.done {
            let _ = done.send(true);
        }
        for e in self.ended {
            let _ = e.await;
        }
    }
}

/// Starts `threads` accepting threads (the first takes `listener`, the others bind their own
/// on its address), lets them accept until `shutdown` completes, and returns once each has
/// closed its listener (its connections still running).
async fn per_thread(
    listener: TcpListener,
    threads: NonZeroUsize,
    accepting: &Accepting,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Threads, ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let mut first = Some(listener.into_std().map_err(ServerError::Serve)?);
    accepting.front.metrics.count_accepted(threads.get());
    let mut accepting = accepting.clone();
    accepting.app = OnRuntime::router(accepting.app, tokio::runtime::Handle::current());
    // `accepting` (stop listening) and `done` (end the runtime) are two signals: a thread's
    // connections outlive its listener until every connection, on every thread, has ended.
    let (listening_tx, listening) = watch::channel(true);
    let (done_tx, done) = watch::channel(false);
    let mut out = Threads {
        done: Some(done_tx),
        ended: Vec::new(),
    };
    let mut closed = Vec::new();
    let mut started = Ok(());
    for i in 0..threads.get() {
        let (ready_tx, ready) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let own = first.take();
        let accepting = accepting.clone();
        let mut listening = listening.clone();
        let mut done = done.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cascade-accept-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match own {
                        Some(l) => TcpListener::from_std(l),
                        None => listen(addr, Accept::PerThread { threads }),
                    };
                    let listener = match listener {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let stop = async move {
                        let _ = listening.wait_for(|l| !*l).await;
                    };
                    if let Err(e) =
                        accept_until(listener, i, &accepting, Order::ConnectionFirst, stop).await
                    {
                        tracing::warn!(error = %e, thread = i, "accepting thread stopped");
                    }
                    drop(closed_tx);
                    let _ = done.wait_for(|d| *d).await;
                });
                drop(runtime);
                drop(ended_tx);
            });
        match thread {
            Ok(_) => out.ended.push(ended),
            Err(e) => {
                started = Err(e);
                break;
            }
        }
        closed.push(closed_rx);
        match ready.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                started = Err(e);
                break;
            }
            Err(_) => {
                started = Err(std::io::Error::other("an accepting thread ended at start"));
                break;
            }
        }
    }
    if started.is_ok() {
        shutdown.await;
    }
    let _ = listening_tx.send(false);
    for c in closed {
        let _ = c.await;
    }
    match started {
        Ok(()) => Ok(out),
        Err(e) => {
            out.finish().await;
            Err(ServerError::Serve(e))
        }
    }
}

/// Whether a loop takes a place under `--max-connections` before it accepts (one loop:
/// the place waits for the next connection) or after (several loops share the places: none
/// holds one without a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    PlaceFirst,
    ConnectionFirst,
}

/// Accepts connections on `listener` (number `index`) until `until` completes, each served
/// by the connection front ([`front`]: the repository's whole files and event streams itself,
/// the rest by HTTP/1 with the header-read timeout; over TLS when an acceptor is set: the
/// handshake must also end within that timeout) in a task of the current runtime, holding a
/// place under `--max-connections`. Closes the listener when it returns.
async fn accept_until(
    listener: TcpListener,
    index: usize,
    a: &Accepting,
    order: Order,
    until: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut until = std::pin::pin!(until);
    let place = || async {
        a.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))
    };
    loop {
        let early = if order == Order::PlaceFirst {
            tokio::select! {
                () = &mut until => break,
                s = place() => Some(s?),
            }
        } else {
            None
        };
        let (tcp, peer) = tokio::select! {
            () = &mut until => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = if let Some(s) = early {
            s
        } else {
            tokio::select! {
                () = &mut until => break,
                s = place() => s?,
            }
        };
        a.front.metrics.accepted(index);
        // Without TCP_NODELAY a small response waits for the peer's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        tokio::spawn(serve_connection(tcp, peer, slot, a.clone()));
    }
    drop(listener);
    Ok(())
}

/// Serves one accepted connection: plain, or TLS after a handshake within the header-read
/// timeout.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    slot: OwnedSemaphorePermit,
    a: Accepting,
) {
    let Accepting {
        acceptor,
        app,
        front,
        stop,
        ..
    } = a;
    match acceptor {
        None => front::serve(tcp, front, app, stop, peer, slot).await,
        // Boxed: a plain connection's task does not carry the size of a TLS session.
        Some(acceptor) => {
            Box::pin(async move {
                let timeout = front.limits.header_read_timeout;
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let kind = tls.get_ref().1.handshake_kind();
                        front
                            .metrics
                            .tls_handshake(kind == Some(rustls::HandshakeKind::Resumed));
                        front::serve(tls, front, app, stop, peer, slot).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            })
            .await;
        }
    }
}

/// The router, run on the server's runtime from an accepting thread (module documentation):
/// each request is a task there; dropping the answer's future aborts it.
#[derive(Clone)]
struct OnRuntime {
    app: axum::Router,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    /// A router that hands every request to `app` on `runtime`.
    fn router(app: axum::Router, runtime: tokio::runtime::Handle) -> axum::Router {
        axum::Router::new().fallback_service(OnRuntime { app, runtime })
    }
}

impl tower::Service<Request<Body>> for OnRuntime {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use tower::ServiceExt as _;
        let task = AbortOnDrop(self.runtime.spawn(self.app.clone().oneshot(req)));
        Box::pin(async move {
            match task.await {
                Ok(answer) => answer,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: the server's runtime is shutting down.
                Err(_) => Ok(axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()),
            }
        })
    }
}

/// A task's handle that aborts the task when dropped before it ended.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}
