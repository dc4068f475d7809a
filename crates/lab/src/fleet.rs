//! The cascade server started in-process on a loopback address, with its first-start tokens
//! captured, its own site repository (domain settings and programs; the server creates it and
//! serves it at `/repo/site/`, the fleet opens it to publish into it too), admin helpers over the real HTTP API, and in-process agents.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_agent::daemon::{self, AgentConfig};
use cascade_client::proto::{MirrorStatus, NotifyRequest};
use cascade_client::{AdminClient, Client};
use cascade_core::report::UpdateReport;
use cascade_core::Policy;
use cascade_repo::TransportLimits;
use cascade_server::Settings;
use tokio::sync::oneshot;
use url::Url;

use crate::server::RunningServer;
use crate::upstream::Upstream;
use crate::{kit, KitError};

/// A running server with its tokens and site repository.
#[derive(Debug)]
pub struct Fleet {
    /// The server's base URL (`https://ADDR/`).
    pub url: Url,
    /// The bootstrap admin token.
    pub admin: String,
    /// The enrollment token.
    pub enroll: String,
    /// An agent enrollment token: agents relaying (see [`Fleet::agent_config`]) enroll with
    /// it and are approved update agents at once (`docs/operating.md#agent-approval`).
    pub agent_enroll: String,
    /// The server's data directory.
    pub data_dir: PathBuf,
    /// The server's own repository (domain settings, programs), served at `/repo/site/`.
    pub site: Upstream,
    api: AdminClient,
    server: RunningServer,
    settings: Settings,
}

impl Fleet {
    /// Starts the server on `listen` with its data in `data_dir`; `upstream_root` turns on
    /// mirroring of the policy's `activeupdate_url`.
    ///
    /// # Errors
    /// When the server cannot open its store or bind.
    pub async fn start(
        data_dir: &Path,
        listen: SocketAddr,
        upstream_root: Option<PathBuf>,
    ) -> Result<Fleet, KitError> {
        Self::start_with(Self::settings(data_dir, upstream_root), listen).await
    }

    /// The settings [`Fleet::start`] uses: data in `data_dir`, update agents hear a notify
    /// 300 ms before clients, clients spread over at most 500 ms, and mirroring of the
    /// policy's `activeupdate_url` pinned to `upstream_root` when given.
    pub fn settings(data_dir: &Path, upstream_root: Option<PathBuf>) -> Settings {
        let mut s = Settings::new(data_dir);
        s.agent_head_start = Duration::from_millis(300);
        s.max_jitter = Duration::from_millis(500);
        s.mirror = upstream_root.map(|root| cascade_server::mirror::MirrorSettings {
            trusted_root: root,
            interval: None,
            limits: TransportLimits::default(),
        });
        s
    }

    /// Starts the server with `settings` (on a fresh data directory) on `listen`.
    ///
    /// # Errors
    /// When the server cannot open its store or bind, or the data directory was used before.
    pub async fn start_with(settings: Settings, listen: SocketAddr) -> Result<Fleet, KitError> {
        let data_dir = settings.data_dir.clone();
        let repo_dir = settings.repo_dir();
        let server = RunningServer::start(settings.clone(), listen).await?;
        let site = Self::site_repo(&settings, &data_dir, &repo_dir)?;
        let http = server
            .http_builder()?
            .build()
            .map_err(|e| kit("http client")(&e))?;
        let first = server.first_start.clone().ok_or_else(|| {
            kit("first start")(&"the data directory was used before; start a fleet on a fresh one")
        })?;
        let api = Client::with_http(server.url.clone(), http).admin(first.admin_token.as_str());
        let agent_enroll = api
            .create_enrollment_token(&cascade_client::proto::NewEnrollmentToken {
                name: "lab update agents".into(),
                agent: true,
                ..Default::default()
            })
            .await
            .map_err(|e| kit("agent enrollment token")(&e))?
            .token;
        Ok(Fleet {
            api,
            url: server.url.clone(),
            admin: first.admin_token,
            enroll: first.enrollment_token,
            agent_enroll,
            data_dir,
            site,
            server,
            settings,
        })
    }

    /// Stops the server and starts it again on the same address and data directory (the
    /// state it committed survives; streams and in-memory state do not).
    ///
    /// # Errors
    /// When the server cannot stop, rebind or open its store again.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        self.server.stop().await?;
        self.server = RunningServer::start(self.settings.clone(), self.server.addr).await?;
        Ok(())
    }

    /// The server's own site repository (it creates it on first start, in `--site-repo` or
    /// `<data>/site-repo`), opened here too so tests can publish into it directly; the
    /// repository's lock keeps the server's publisher and this one apart.
    fn site_repo(
        settings: &Settings,
        data_dir: &Path,
        repo_dir: &Path,
    ) -> Result<Upstream, KitError> {
        let dir = settings
            .site_repo
            .clone()
            .unwrap_or_else(|| data_dir.join("site-repo"));
        if std::fs::symlink_metadata(repo_dir.join("site")).is_ok() && settings.site_repo.is_none()
        {
            return Err(kit("site repository")(&"the repository directory has an operator's `site` link; the fleet uses the server's own"));
        }
        Upstream::open(&dir)
    }

    /// Brings the URL mirror `mirror` up to date with what the server serves at `/repo/`: its
    /// repository directory and its own site repository (as `site/`), the way an operator's
    /// rsync of `/repo/` would.
    ///
    /// # Errors
    /// A file that cannot be read or written.
    pub fn sync_mirror(&self, mirror: &crate::serve::StaticServer) -> Result<(), KitError> {
        mirror.sync_from(&self.settings.repo_dir())?;
        mirror.sync_into(&self.site.public_dir(), Path::new("site"))
    }

    /// The server's CA certificate (PEM), `None` over plain HTTP.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.server.ca_pem.as_deref()
    }

    /// The admin API of this server (typed requests and answers).
    pub fn api(&self) -> &AdminClient {
        &self.api
    }

    /// Replaces the whole policy with `toml` (validated locally first).
    ///
    /// # Errors
    /// A bad policy or a refused call.
    pub async fn apply_policy(&self, toml: &str) -> Result<(), KitError> {
        let policy = Policy::from_toml(toml).map_err(|e| kit("policy")(&e))?;
        let doc = cascade_core::PolicyDoc::from_policy(&policy);
        self.api
            .put_policy(&doc, None)
            .await
            .map(|_| ())
            .map_err(|e| kit("admin call")(&e))
    }

    /// Mirrors the upstream now.
    ///
    /// # Errors
    /// When mirroring fails.
    pub async fn mirror(&self) -> Result<MirrorStatus, KitError> {
        self.api
            .mirror_now()
            .await
            .map_err(|e| kit("admin call")(&e))
    }

    /// Notify All Clients.
    ///
    /// # Errors
    /// When the call is refused.
    pub async fn notify(&self) -> Result<cascade_client::proto::NotifyResponse, KitError> {
        self.api
            .notify(&NotifyRequest::default())
            .await
            .map_err(|e| kit("admin call")(&e))
    }

    /// Update agents holding the notification stream now (`/metrics`), so a test can notify
    /// only once they will hear it.
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn agent_streams(&self) -> Result<u64, KitError> {
        let text = self
            .api
            .client()
            .metrics()
            .await
            .map_err(|e| kit("metrics")(&e))?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("cascade_event_streams{role=\"agent\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    /// An agent configuration for this fleet: data in `data_dir`, connections from `ip`,
    /// relaying at `relay` when given, pinned to `upstream_root` when given.
    pub fn agent_config(
        &self,
        data_dir: &Path,
        ip: IpAddr,
        relay: Option<SocketAddr>,
        upstream_root: Option<&Path>,
    ) -> AgentConfig {
        let mut pinned = vec![(
            cascade_core::TrustDomain::Site,
            self.site.public_dir().join("metadata/1.root.json"),
        )];
        if let Some(r) = upstream_root {
            pinned.push((cascade_core::TrustDomain::Upstream, r.to_owned()));
        }
        AgentConfig {
            server: Some(self.url.clone()),
            more_servers: Vec::new(),
            enroll_token: Some(if relay.is_some() {
                self.agent_enroll.clone()
            } else {
                self.enroll.clone()
            }),
            data_dir: data_dir.to_owned(),
            bind_ip: Some(ip),
            name: ip.to_string(),
            domain: None,
            relay_listen: relay,
            relay_cache_bytes: 1 << 30,
            interval: Duration::from_secs(3600),
            relay_report_interval: Duration::from_millis(300),
            limits: TransportLimits {
                connect_timeout: Duration::from_secs(2),
                header_timeout: Duration::from_secs(5),
                window: Duration::from_secs(2),
                ..TransportLimits::default()
            },
            verify_interval: None,
            pinned_roots: pinned,
            self_update: None,
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(&mut self) {
        if let Err(e) = self.server.stop().await {
            eprintln!("cascade server stopped: {e}");
        }
    }
}

/// An agent running in this process until stopped.
#[derive(Debug)]
pub struct AgentHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), daemon::AgentError>>>,
}

impl AgentHandle {
    /// Starts `cfg` as a long-running agent (relay too when configured).
    pub fn spawn(cfg: AgentConfig) -> AgentHandle {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run(cfg, async move {
            let _ = rx.await;
        }));
        AgentHandle {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the agent (its relay stops serving) and waits for it.
    ///
    /// # Errors
    /// The agent's own start-up error, if it failed.
    pub async fn stop(&mut self) -> Result<(), KitError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => match t.await {
                Ok(r) => r.map_err(|e| kit("agent")(&e)),
                Err(e) => Err(kit("agent task")(&e)),
            },
            None => Ok(()),
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs one update cycle of `cfg` (enrolling first if needed).
///
/// # Errors
/// Start-up failures.
pub async fn update_once(cfg: AgentConfig) -> Result<UpdateReport, KitError> {
    daemon::once(cfg).await.map_err(|e| kit("agent once")(&e))
}

/// Waits until `check` is true, polling every 20 ms, for at most `limit`.
///
/// # Errors
/// When the limit passes first.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> Result<(), KitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(kit("wait")(&format!("condition not met within {limit:?}")))
}
