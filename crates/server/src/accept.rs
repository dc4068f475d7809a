//! How the server accepts connections (`docs/operating.md#accept-per-thread`,
//! `docs/architecture.md#serving-the-repository`): [`Accept::Shared`] or [`Accept::PerThread`].
//!
//! **Shared** (the default of [`crate::Settings`]; `cascade server`'s is per thread): one
//! listening socket, one accept loop on the server's tokio
//! runtime, and every connection a task of that runtime (its worker threads steal tasks from
//! one another and share one I/O driver).
//!
//! **Per thread**: N threads, each with its own current-thread tokio runtime and its own
//! listening socket on the same address (`SO_REUSEPORT`, [`cascade_front::listen_reuseport`],
//! each with the listen backlog of `docs/operating.md#listen-backlog`); the kernel spreads new
//! connections over the sockets, and a connection lives on the thread that accepted it: the
//! connection front (`crate::front`), TLS, `/repo/` answers (`sendfile`, the thread's own
//! small-file copies and counter shard) and held event streams all run there, with no
//! wake-up or task moved between threads — nginx's worker processes, as threads.
//!
//! What is *not* run on those threads: the router. Its handlers use the database pool
//! (`sqlx`: a PostgreSQL connection's socket belongs to the runtime that opened it, and the
//! pool opens connections on whichever runtime asks first), spawn tasks that must outlive a
//! connection (group commit, notifications) and keep state bound to the server's runtime.
//! So the split is at the hand-over: a connection the front hands to hyper and the router
//! (`/api/…`, the console, `/metrics`, a `/repo/` request the front does not answer) moves,
//! with the bytes already read and its TLS session, to the server's runtime for the rest of
//! its life (`Portable`: its socket is taken off the thread's I/O driver and registered
//! with the server's; a tokio socket belongs to one driver, so it is moved, never shared) and
//! is served there exactly as in shared mode, with no request crossing runtimes. The one
//! routed request the front itself writes the answer of, a notification stream, runs on the
//! server's runtime as a task (`OnRuntime`) whose answer (the stream) comes back to be held
//! on the accepting thread; a request dropped by its connection aborts its task, as dropping
//! the future does in shared mode. (Running every routed request of a connection that stays
//! on its thread as such a task was measured first: two wake-ups across threads per request,
//! ~20 % more CPU per routed request on 2 cores.)
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

use crate::front::{self, Conn, Front};
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
    let runtime = tokio::runtime::Handle::current();
    accepting.front = Arc::new(Front {
        served: accepting.front.served.clone(),
        metrics: accepting.front.metrics.clone(),
        limits: accepting.front.limits,
        home: Some(front::Home {
            runtime: runtime.clone(),
            app: accepting.app.clone(),
        }),
    });
    accepting.app = OnRuntime::router(accepting.app, runtime);
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
        let start = ThreadStart {
            index: i,
            own: first.take(),
            addr,
            threads,
            accepting: accepting.clone(),
            listening: listening.clone(),
            done: done.clone(),
            ready: ready_tx,
            closed: closed_tx,
            ended: ended_tx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("cascade-accept-{i}"))
            .spawn(move || accepting_thread(start));
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

/// What one accepting thread is given.
struct ThreadStart {
    index: usize,
    /// The listener the server was given (the first thread's); the others bind their own.
    own: Option<std::net::TcpListener>,
    addr: std::net::SocketAddr,
    threads: NonZeroUsize,
    accepting: Accepting,
    /// Flips to `false`: stop accepting.
    listening: watch::Receiver<bool>,
    /// Flips to `true`: every connection has ended, the runtime may end.
    done: watch::Receiver<bool>,
    /// Whether the thread listens.
    ready: tokio::sync::oneshot::Sender<std::io::Result<()>>,
    /// Dropped when the thread's listener is closed.
    closed: tokio::sync::oneshot::Sender<()>,
    /// Dropped when the thread's runtime is.
    ended: tokio::sync::oneshot::Sender<()>,
}

/// One accepting thread: its runtime, its listener, its accept loop; the runtime runs until
/// every connection of the server has ended.
fn accepting_thread(t: ThreadStart) {
    let ThreadStart {
        index,
        own,
        addr,
        threads,
        accepting,
        mut listening,
        mut done,
        ready,
        closed,
        ended,
    } = t;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
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
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let stop = async move {
            let _ = listening.wait_for(|l| !*l).await;
        };
        if let Err(e) =
            accept_until(listener, index, &accepting, Order::ConnectionFirst, stop).await
        {
            tracing::warn!(error = %e, thread = index, "accepting thread stopped");
        }
        drop(closed);
        let _ = done.wait_for(|d| *d).await;
    });
    drop(runtime);
    drop(ended);
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
        if a.front.home.is_some() {
            tokio::spawn(serve_connection(Portable::new(tcp), peer, slot, a.clone()));
        } else {
            tokio::spawn(serve_connection(tcp, peer, slot, a.clone()));
        }
    }
    drop(listener);
    Ok(())
}

/// Serves one accepted connection: plain, or TLS after a handshake within the header-read
/// timeout.
async fn serve_connection<C>(
    tcp: C,
    peer: std::net::SocketAddr,
    slot: OwnedSemaphorePermit,
    a: Accepting,
) where
    C: Conn,
    tokio_rustls::server::TlsStream<C>: Conn,
{
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

/// An accepting thread's TCP connection, which can move to the server's runtime when it is
/// handed over to hyper ([`Conn::rehome`]): its socket is taken off the thread's I/O driver
/// and registered with the server's (a tokio socket belongs to one driver). Handed-over
/// connections then live as in shared mode, with no request crossing runtimes.
pub(crate) struct Portable {
    /// `None` only while it moves.
    tcp: Option<tokio::net::TcpStream>,
}

impl Portable {
    fn new(tcp: tokio::net::TcpStream) -> Self {
        Portable { tcp: Some(tcp) }
    }

    fn tcp(&mut self) -> std::io::Result<&mut tokio::net::TcpStream> {
        self.tcp
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl Conn for Portable {
    async fn send_file(&mut self, file: std::fs::File, len: u64) -> std::io::Result<()> {
        self.tcp()?.send_file(file, len).await
    }

    fn rehome(&mut self, to: &tokio::runtime::Handle) -> std::io::Result<()> {
        let tcp = self
            .tcp
            .take()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))?;
        let std = tcp.into_std()?;
        let _on = to.enter();
        self.tcp = Some(tokio::net::TcpStream::from_std(std)?);
        Ok(())
    }
}

impl Conn for tokio_rustls::server::TlsStream<Portable> {
    fn send_file(
        &mut self,
        file: std::fs::File,
        len: u64,
    ) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        // Encrypted in user space, as every TLS connection (`front::copy_file`).
        front::copy_file(self, file, len)
    }

    fn rehome(&mut self, to: &tokio::runtime::Handle) -> std::io::Result<()> {
        self.get_mut().0.rehome(to)
    }
}

impl tokio::io::AsyncRead for Portable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.tcp() {
            Ok(t) => Pin::new(t).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl tokio::io::AsyncWrite for Portable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.tcp() {
            Ok(t) => Pin::new(t).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.tcp() {
            Ok(t) => Pin::new(t).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tcp() {
            Ok(t) => Pin::new(t).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tcp() {
            Ok(t) => Pin::new(t).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
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
