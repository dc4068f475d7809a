//! The cascade server (`docs/architecture.md#data-flow`): it keeps the policy in SQL under a
//! revision number, serves the admin API and the client API (enroll, fetch policy, check in,
//! notification stream), fans out Notify All Clients to update agents first, serves the repository
//! directory at `/repo/` and mirrors the upstream into it, and exposes `/metrics` and `/healthz`.
//! Start it with [`launch`] (or [`Server::open`] then [`Server::serve`]) on a listener you bound,
//! so tests can use `127.0.0.1:0`.

pub mod auth;
pub mod console;
pub mod db;
pub mod error;
pub mod metrics;
pub mod mirror;
pub mod notify;
pub mod openapi;
pub mod repo;
pub mod routes;
pub mod settings;
pub mod state;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use settings::{Clock, FirstStart, HashCost, Settings, SystemClock};
use state::{AppState, Inner};
use store::TokenKind;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--database-url` with a scheme other than `sqlite:` or `postgres://`.
    #[error("--database-url: unsupported scheme `{0}` (use sqlite:PATH or postgres://…)")]
    DatabaseUrl(String),
    /// The database could not be opened or queried.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// First-start setup failed.
    #[error("first start: {0}")]
    Setup(#[from] ApiError),
    /// The HTTP server failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

impl ServerError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::Io { .. } => "server.io",
            ServerError::DatabaseUrl(_) => "server.database_url",
            ServerError::Db(_) => "server.database",
            ServerError::Migrate(_) => "server.migrate",
            ServerError::Setup(_) => "server.setup",
            ServerError::Serve(_) => "server.serve",
        }
    }
}

/// An opened server: database migrated, first-start secrets created if the store was new.
pub struct Server {
    state: AppState,
    first_start: Option<(String, String)>,
    on_first_start: settings::FirstStartHook,
}

impl Server {
    /// Opens the database (creating and migrating it) and, on first start, creates the
    /// default policy, the bootstrap admin token and the enrollment token.
    ///
    /// # Errors
    /// See [`ServerError`].
    pub async fn open(settings: Settings) -> Result<Server, ServerError> {
        let db = db::open(&settings.data_dir, settings.database_url.as_deref()).await?;
        let repo_dir = settings.repo_dir();
        std::fs::create_dir_all(&repo_dir).map_err(|e| ServerError::Io {
            path: repo_dir.display().to_string(),
            source: e,
        })?;
        let store = store::Store::new(db.pool.clone(), settings.clock.clone());
        let auth = auth::Verifier::new(store.clone(), settings.clock.clone());
        let state = AppState::new(Inner {
            db,
            store,
            clock: settings.clock.clone(),
            random: settings.random.clone(),
            hash_cost: settings.hash_cost,
            stale_after: settings.stale_after,
            data_dir: settings.data_dir.clone(),
            repo_dir,
            mirror: mirror::Mirror {
                settings: settings.mirror.clone(),
                ..mirror::Mirror::default()
            },
            notifier: Arc::new(notify::Notifier::new(
                settings.agent_head_start,
                settings.jitter_per_client,
                settings.max_jitter,
                settings.notify_poll,
                settings.notify_replay_window,
            )),
            metrics: Arc::default(),
            repo_cache: Arc::default(),
            auth,
            shutdown: tokio::sync::watch::channel(false).0,
        });
        let first_start = bootstrap(&state).await?;
        notify::start_following(&state.notifier, &state.store)
            .await
            .map_err(ApiError::from)?;
        Ok(Server {
            state,
            first_start,
            on_first_start: settings.on_first_start,
        })
    }

    /// The HTTP application.
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, ends event
    /// streams and waits for requests in flight.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let url = format!("http://{addr}");
        tracing::info!(%url, "cascade server listening");
        if let Some((admin_token, enrollment_token)) = &self.first_start {
            (self.on_first_start)(&FirstStart {
                admin_token: admin_token.clone(),
                enrollment_token: enrollment_token.clone(),
                url,
            });
        }
        tokio::spawn(mirror_on_schedule(self.state.clone()));
        tokio::spawn(notify::follow(
            self.state.notifier.clone(),
            self.state.store.clone(),
            self.state.shutdown.subscribe(),
        ));
        let app = self.router();
        let state = self.state.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = state.shutdown.send(true);
        };
        // Without TCP_NODELAY a small response waits for the peer's delayed ACK (~40 ms).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .await
        .map_err(ServerError::Serve)?;
        self.state.db.pool.close().await;
        Ok(())
    }
}

/// Opens the server and serves on `listener` until `shutdown` completes (the atuin style).
///
/// # Errors
/// See [`ServerError`].
pub async fn launch(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::open(settings)
        .await?
        .serve(listener, shutdown)
        .await
}

/// Mirrors the upstream every configured interval until the server shuts down.
async fn mirror_on_schedule(st: AppState) {
    let Some(every) = st.mirror.settings.as_ref().and_then(|c| c.interval) else {
        return;
    };
    let mut stop = st.shutdown.subscribe();
    loop {
        if let Err(e) = mirror::run_once(&st.mirror_job()).await {
            tracing::warn!(error = %e, "scheduled mirror skipped");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// On an empty store: default policy at revision 1 and the two first tokens, in one
/// transaction. Returns the token texts to show once.
async fn bootstrap(state: &AppState) -> Result<Option<(String, String)>, ApiError> {
    if !state.store.is_empty().await? {
        return Ok(None);
    }
    let admin_id = auth::random_hex(&state.random, 8)?;
    let enroll_id = auth::random_hex(&state.random, 8)?;
    let (admin, admin_hash) =
        auth::new_token(&state.random, state.hash_cost, "adm", &admin_id).await?;
    let (enroll, enroll_hash) =
        auth::new_token(&state.random, state.hash_cost, "enr", &enroll_id).await?;
    let created = state
        .store
        .initialize(&[
            (&admin_id, TokenKind::Admin, &admin_hash, "bootstrap admin"),
            (&enroll_id, TokenKind::Enroll, &enroll_hash, "enrollment"),
        ])
        .await?;
    if !created {
        return Ok(None);
    }
    tracing::info!("first start: default policy and bootstrap tokens created");
    Ok(Some((admin, enroll)))
}
