//! The cascade server (`docs/architecture.md#data-flow`): it keeps the policy in SQL under a
//! revision number, serves the admin API and the client API (enroll, fetch policy, check in,
//! notification stream), fans out Notify All Clients to update agents first, serves the repository
//! directory at `/repo/` and mirrors the upstream into it, publishes its own site repository
//! ([`site`], served at `/repo/site/`), and exposes `/metrics` and `/healthz`.
//! Start it with [`launch`] (or [`Server::open`] then [`Server::serve`]) on a listener you bound,
//! so tests can use `127.0.0.1:0`.

pub mod accept;
pub mod audit;
pub mod auth;
pub mod backfill;
pub mod console;
pub mod db;
pub mod error;
pub mod events;
pub mod fleet;
pub mod forwarded;
mod front;
pub mod human;
pub mod json_shape;
pub mod limits;
pub mod lockout;
pub mod metrics;
pub mod mirror;
pub mod notify;
pub mod openapi;
pub mod repo;
pub mod revisions;
pub mod rollout;
pub mod routes;
pub mod settings;
pub mod shared;
pub mod site;
pub mod state;
pub mod store;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use accept::{listen, Accept};
pub use error::ApiError;
pub use limits::ServeLimits;
pub use settings::{Clock, FirstStart, HashCost, Settings, SystemClock};
use state::{AppState, Inner};
use store::TokenKind;
pub use tls::{Tls, TlsError, TlsMode};

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
    /// The site repository could not be opened or created.
    #[error(transparent)]
    Site(#[from] site::SiteError),
    /// The HTTP server failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
    /// TLS could not be set up (`docs/operating.md#tls`).
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The replicas' shared store failed at start.
    #[error(transparent)]
    Shared(#[from] shared::SharedError),
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
            ServerError::Site(e) => e.code(),
            ServerError::Serve(_) => "server.serve",
            ServerError::Tls(e) => e.code(),
            ServerError::Shared(e) => e.code(),
        }
    }
}

/// An opened server: database migrated, first-start secrets created if the store was new.
pub struct Server {
    state: AppState,
    first_start: Option<FirstSecrets>,
    on_first_start: settings::FirstStartHook,
    site_refresh: std::time::Duration,
    replica_poll: std::time::Duration,
    trusted_proxies: Arc<forwarded::TrustedProxies>,
    backfill_batch: u32,
    backfill_pause: std::time::Duration,
    accept: Accept,
}

impl Server {
    /// Opens the database (creating and migrating it) and, on first start, creates the
    /// default policy, the bootstrap admin token and the enrollment token.
    ///
    /// # Errors
    /// See [`ServerError`].
    pub async fn open(settings: Settings) -> Result<Server, ServerError> {
        db::private_dir(&settings.data_dir)?;
        let db = db::open(&settings.data_dir, settings.database_url.as_deref()).await?;
        // Replicas on one PostgreSQL: one of them at a time creates or loads what they share
        // (docs/operating.md#shared-repository-and-one-writer).
        let (shared, startup) = match &settings.database_url {
            Some(url) if db.backend == db::Backend::Postgres => {
                let sh = shared::Shared::connect(url, &settings.data_dir, settings.clock.clone())
                    .await?;
                let lock = sh.lock(shared::Writer::Startup, None).await?;
                (Some(sh), lock)
            }
            _ => (None, None),
        };
        let tls = Arc::new(open_tls(&settings, shared.as_ref()).await?);
        let repo_dir = settings.repo_dir();
        std::fs::create_dir_all(&repo_dir).map_err(|e| ServerError::Io {
            path: repo_dir.display().to_string(),
            source: e,
        })?;
        let site = site::Site::open(
            settings.site_repo.as_deref(),
            &settings.data_dir,
            &repo_dir,
            settings.key_passphrase.clone(),
            settings.clock.clone(),
            shared.clone(),
        )
        .await?;
        if let Some(sh) = &shared {
            sh.materialize(shared::Tree::Upstream, &repo_dir.join("upstream"))
                .await?;
        }
        let store = store::Store::new(db.pool.clone(), settings.clock.clone())
            .with_revisions_max_age(settings.revisions_max_age);
        let auth = auth::Verifier::new(store.clone(), settings.clock.clone(), settings.hash_cost)
            .with_random(settings.random.clone())
            .with_lockout(settings.lockout);
        let repo_cache = Arc::<repo::Cache>::default();
        let served = repo::Served {
            dir: repo_dir.clone(),
            site: site.own_public_dir(),
            cache: repo_cache.clone(),
        };
        let state = AppState::new(Inner {
            db,
            store,
            clock: settings.clock.clone(),
            random: settings.random.clone(),
            hash_cost: settings.hash_cost,
            stale_after: settings.stale_after,
            update_interval: settings.update_interval,
            health_cache: Arc::default(),
            backfill: Arc::default(),
            data_dir: settings.data_dir.clone(),
            repo_dir: repo_dir.clone(),
            site,
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
                served,
            )),
            metrics: Arc::default(),
            repo_cache,
            auth,
            limits: settings.limits,
            metrics_token: settings.metrics_token.clone(),
            tls,
            replica_urls: settings.replica_urls.clone(),
            shared,
            shutdown: tokio::sync::watch::channel(false).0,
        });
        let first_start = bootstrap(&state).await?;
        // Clients from before the fleet figures get theirs in the background (`backfill`).
        let to_derive = state.store.clients_to_derive().await;
        state.backfill.start(to_derive.map_err(ApiError::from)?);
        publish_pending(&state).await;
        if let Some(lock) = startup {
            lock.release().await;
        }
        notify::start_following(&state.notifier, &state.store)
            .await
            .map_err(ApiError::from)?;
        Ok(Server {
            state,
            first_start,
            on_first_start: settings.on_first_start,
            site_refresh: settings.site_refresh,
            replica_poll: settings.replica_poll,
            trusted_proxies: Arc::new(settings.trusted_proxies),
            backfill_batch: settings.backfill_batch,
            backfill_pause: settings.backfill_pause,
            accept: settings.accept,
        })
    }

    /// The state its handlers share (benchmarks time its parts, e.g.
    /// [`rollout::evaluate`]).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The HTTP application; with trusted proxies, wrapped in the layer that gives every
    /// route the client's address instead of the proxy's ([`forwarded`]).
    pub fn router(&self) -> axum::Router {
        let app = routes::router(self.state.clone());
        if self.trusted_proxies.is_empty() {
            return app;
        }
        app.layer(axum::middleware::from_fn_with_state(
            self.trusted_proxies.clone(),
            forwarded::resolve,
        ))
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, ends event
    /// streams and waits for requests in flight. With [`Accept::PerThread`] in the settings,
    /// `listener` must have been bound by [`listen`] (`SO_REUSEPORT`): each further
    /// accepting thread binds its own socket on its address ([`accept`]).
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let acceptor = self.state.tls.acceptor(addr)?;
        let url = if acceptor.is_some() {
            format!("https://{addr}")
        } else {
            tracing::warn!(
                "--insecure-plain-http: tokens, passwords and the console cookie travel in \
                 clear; anyone on the path can take over this server (docs/operating.md#tls)"
            );
            format!("http://{addr}")
        };
        tracing::info!(%url, ca_sha256 = ?self.state.tls.ca_sha256(), "cascade server listening");
        if !self.trusted_proxies.is_empty() {
            let nets: Vec<String> = self
                .trusted_proxies
                .nets()
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::info!(
                trusted_proxies = %nets.join(","),
                "client addresses from X-Forwarded-For of these proxies (docs/operating.md#trusted-proxies)"
            );
        }
        if let Some(first) = &self.first_start {
            (self.on_first_start)(&FirstStart {
                admin_token: first.admin_token.clone(),
                admin_user: BOOTSTRAP_USER.to_owned(),
                admin_password: first.admin_password.clone(),
                enrollment_token: first.enrollment_token.clone(),
                url,
                ca_sha256: self.state.tls.ca_sha256(),
            });
        }
        match (&self.state.shared, mirror_interval(&self.state)) {
            (Some(sh), every) => {
                if let Some(every) = every {
                    tokio::spawn(shared::lead_mirror(
                        self.state.clone(),
                        sh.clone(),
                        every,
                        self.replica_poll,
                    ));
                }
                tokio::spawn(shared::follow(
                    self.state.clone(),
                    sh.clone(),
                    self.replica_poll,
                    self.state.shutdown.subscribe(),
                ));
            }
            (None, _) => {
                tokio::spawn(mirror_on_schedule(self.state.clone()));
            }
        }
        if let site::Site::Own(publisher) = &self.state.site {
            tokio::spawn(site::refresh_on_schedule(
                publisher.clone(),
                self.site_refresh,
                self.state.shutdown.subscribe(),
            ));
        }
        tokio::spawn(rollout::run_on_schedule(self.state.clone()));
        // Fleet figures and the search index for clients from before this version.
        tokio::spawn(backfill::run(
            self.state.clone(),
            self.backfill_batch,
            self.backfill_pause,
            self.state.shutdown.subscribe(),
        ));
        // The console's fleet samples (docs/operating.md#fleet-charts).
        tokio::spawn(fleet::sampler(
            self.state.clone(),
            self.state.shutdown.subscribe(),
        ));
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
        let max = self.state.limits.max_connections as u64;
        front::raise_open_files(max.saturating_add(256));
        let front = Arc::new(front::Front {
            served: self.state.notifier.served().clone(),
            metrics: self.state.metrics.clone(),
            limits: self.state.limits,
            home: None,
        });
        accept::serve(listener, self.accept, acceptor, app, front, signal).await?;
        // Check-ins still queued are stored before the pool closes
        // (docs/operating.md#group-commit).
        self.state.store.stop_check_ins().await;
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

/// Publishes the settings documents the store holds but the site repository lacks (a write
/// that was stored, then interrupted before its publish); a failure is logged, the server
/// starts anyway and the next start tries again.
async fn publish_pending(state: &AppState) {
    match state.store.current().await {
        Ok(cur) => state.site.publish_after_write(&cur.policy).await,
        Err(e) => tracing::warn!(error = %e, "domain settings: cannot read the policy to publish"),
    }
}

/// How often the upstream is mirrored on schedule (`None`: only on demand).
fn mirror_interval(st: &AppState) -> Option<std::time::Duration> {
    st.mirror.settings.as_ref().and_then(|c| c.interval)
}

/// Opens the TLS material; on a replica the private CA is the one stored in the database
/// (`tls::open_shared`).
async fn open_tls(
    settings: &Settings,
    shared: Option<&shared::Shared>,
) -> Result<Tls, ServerError> {
    Ok(match shared {
        Some(sh) => {
            tls::open_shared(
                &settings.data_dir,
                &settings.tls,
                sh,
                settings.key_passphrase.as_ref(),
            )
            .await?
        }
        None => Tls::open(
            &settings.data_dir,
            &settings.tls,
            settings.key_passphrase.as_ref(),
        )?,
    })
}

/// Mirrors the upstream every configured interval until the server shuts down.
async fn mirror_on_schedule(st: AppState) {
    let Some(every) = mirror_interval(&st) else {
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

/// The bootstrap admin user's name.
pub const BOOTSTRAP_USER: &str = "admin";

/// The secrets of a first start, shown once.
struct FirstSecrets {
    admin_token: String,
    admin_password: String,
    enrollment_token: String,
}

/// On an empty store: default policy at revision 1, the bootstrap admin user with its
/// first API token, and the enrollment token, in one transaction. Returns the secrets to
/// show once.
async fn bootstrap(state: &AppState) -> Result<Option<FirstSecrets>, ApiError> {
    if !state.store.is_empty().await? {
        return Ok(None);
    }
    let admin_id = auth::random_hex(&state.random, 8)?;
    let enroll_id = auth::random_hex(&state.random, 8)?;
    let (admin, admin_hash) = auth::new_token(&state.random, "adm", &admin_id)?;
    let (enroll, enroll_hash) = auth::new_token(&state.random, "enr", &enroll_id)?;
    let admin_password = auth::random_hex(&state.random, 12)?;
    let password_hash = state.auth.hash_password(&admin_password).await?;
    let created = state
        .store
        .initialize(
            (BOOTSTRAP_USER, &password_hash),
            &[
                (&admin_id, TokenKind::Admin, &admin_hash, "bootstrap admin"),
                (&enroll_id, TokenKind::Enroll, &enroll_hash, "enrollment"),
            ],
        )
        .await?;
    if !created {
        return Ok(None);
    }
    tracing::info!("first start: default policy, bootstrap admin user and tokens created");
    Ok(Some(FirstSecrets {
        admin_token: admin,
        admin_password,
        enrollment_token: tls::enrollment_token_text(state, enroll),
    }))
}
