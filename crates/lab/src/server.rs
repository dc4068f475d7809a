//! The cascade server started in-process on a loopback address: the one way the lab, the
//! test kit and the server's own tests start it. The first-start secrets are captured
//! instead of printed, and the server is healthy when [`RunningServer::start`] returns. It
//! speaks HTTPS with its private CA unless its settings say otherwise; [`RunningServer::ca_pem`]
//! is the CA to trust, and [`RunningServer::client`] a typed client trusting it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_server::{FirstStart, Server, ServerError, Settings};
use tokio::sync::oneshot;
use url::Url;

use crate::{kit, LabError};

/// A server serving on its own task until stopped (or dropped).
#[derive(Debug)]
pub struct RunningServer {
    /// The base URL, `https://ADDR/` (`http://` with plain HTTP).
    pub url: Url,
    /// The CA certificate to trust (PEM), `None` over plain HTTP.
    pub ca_pem: Option<Vec<u8>>,
    /// The bound address.
    pub addr: SocketAddr,
    /// The first-start secrets, when this start created the store (`None` on a restart).
    pub first_start: Option<FirstStart>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl RunningServer {
    /// Binds `listen` (port 0 picks a free port), opens the server with `settings` (its
    /// `on_first_start` is replaced: the secrets land in [`RunningServer::first_start`]),
    /// serves, and waits until `/healthz` answers.
    ///
    /// # Errors
    /// When the address cannot be bound, the store not opened, or the server does not
    /// become healthy.
    pub async fn start(mut settings: Settings, listen: SocketAddr) -> Result<Self, LabError> {
        let seen: Arc<Mutex<Option<FirstStart>>> = Arc::default();
        let slot = Arc::clone(&seen);
        settings.on_first_start = Arc::new(move |f: &FirstStart| {
            if let Ok(mut g) = slot.lock() {
                *g = Some(f.clone());
            }
        });
        let listener =
            cascade_server::listen(listen, settings.accept).map_err(|e| kit("bind server")(&e))?;
        let addr = listener.local_addr().map_err(|e| kit("bind server")(&e))?;
        let server = Server::open(settings.clone())
            .await
            .map_err(|e| kit("open server")(&e))?;
        let ca_pem = server.state().tls.ca_pem().map(<[u8]>::to_vec);
        let scheme = if ca_pem.is_some() { "https" } else { "http" };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = rx.await;
        }));
        let url = Url::parse(&format!("{scheme}://{addr}/")).map_err(|e| kit("server URL")(&e))?;
        let mut running = RunningServer {
            url,
            ca_pem,
            addr,
            first_start: None,
            stop: Some(tx),
            task: Some(task),
        };
        wait_healthy(&running.url, running.ca_pem.as_deref()).await?;
        // The first-start hook runs while the server starts serving: read it once healthy.
        running.first_start = seen.lock().map_err(|e| kit("first start")(&e))?.take();
        Ok(running)
    }

    /// A `reqwest` client builder trusting only this server's CA (no proxy).
    ///
    /// # Errors
    /// When the CA certificate is not usable.
    pub fn http_builder(&self) -> Result<reqwest::ClientBuilder, LabError> {
        cascade_client::http_builder(self.ca_pem.as_deref()).map_err(|e| kit("http client")(&e))
    }

    /// A typed client of this server trusting its CA.
    ///
    /// # Errors
    /// When the client cannot be built.
    pub fn client(&self) -> Result<cascade_client::Client, LabError> {
        cascade_client::Client::builder(self.url.clone())
            .trust_ca_pem(self.ca_pem.clone())
            .build()
            .map_err(|e| kit("client")(&e))
    }

    /// Stops serving and waits for the server to finish.
    ///
    /// # Errors
    /// The server's own error, or its task's failure.
    pub async fn stop(&mut self) -> Result<(), LabError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => match t.await {
                Ok(r) => r.map_err(|e| kit("server")(&e)),
                Err(e) => Err(kit("server task")(&e)),
            },
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn wait_healthy(base: &Url, ca_pem: Option<&[u8]>) -> Result<(), LabError> {
    let http = cascade_client::http_builder(ca_pem)
        .map_err(|e| kit("http client")(&e))?
        .build()
        .map_err(|e| kit("http client")(&e))?;
    let url = base.join("healthz").map_err(|e| kit("health")(&e))?;
    for _ in 0..250 {
        if http
            .get(url.clone())
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(kit("health")(&"the server did not become healthy"))
}
