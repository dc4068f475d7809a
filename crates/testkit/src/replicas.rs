//! Replicas of the server as real processes (`docs/operating.md#replicas`): `n` `cascade
//! server` processes on one PostgreSQL database, replica `i` listening on 127.0.0.(11+i).
//! The first one starts alone and makes the first-start secrets (admin token, password,
//! enrollment token), the private CA and the site repository, which it stores in the database;
//! the others load them from there (`docs/operating.md#shared-repository-and-one-writer`), so
//! a client pinned to the CA and the roots of one replica trusts them all. A replica can be
//! killed with SIGKILL and started again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cascade_client::{AdminClient, Client};
use url::Url;

use crate::{kit, KitError};

/// The key passphrase every replica is started with (`--key-passphrase-file`).
pub const PASSPHRASE: &str = "replicas share one passphrase";

/// One replica.
#[derive(Debug)]
pub struct Replica {
    /// Its base URL (`https://127.0.0.X:PORT/`).
    pub url: Url,
    /// Its data directory.
    pub data_dir: PathBuf,
    listen: SocketAddr,
    child: Option<Child>,
}

impl Replica {
    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// What the first replica printed at its first start.
#[derive(Debug, Clone, Default)]
pub struct FirstSecrets {
    /// The admin user's name.
    pub admin_user: String,
    /// Its console password.
    pub admin_password: String,
    /// Its API token.
    pub admin_token: String,
    /// The full enrollment token.
    pub enroll_token: String,
}

/// Replicas of one server on one database.
#[derive(Debug)]
pub struct Replicas {
    /// The replicas, in order.
    pub replicas: Vec<Replica>,
    /// The first start's secrets.
    pub secrets: FirstSecrets,
    /// The CA certificate every replica's certificate is issued by.
    pub ca_pem: Vec<u8>,
    bin: PathBuf,
    database_url: String,
    extra: Vec<String>,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for r in &mut self.replicas {
            if let Some(mut c) = r.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The address replica `i` listens on: 127.0.0.(11+i), on a free port.
fn replica_listen(i: usize) -> Result<SocketAddr, KitError> {
    let last = u8::try_from(11 + i).map_err(|e| kit("replica address")(&e))?;
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| kit("replica address")(&e))
}

/// The line after the one starting with `label` in `text`, trimmed.
fn after(text: &str, label: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|l| l.starts_with(label))?;
    lines.next().map(|l| l.trim().to_owned())
}

impl Replicas {
    /// Starts `n` replicas of the `cascade` binary `bin` on `database_url` (an empty
    /// database), their data directories under `dir`, each with the further server
    /// arguments `extra` (e.g. `--upstream-root FILE`) and `--replica-url` for every replica;
    /// returns once every one answers `/healthz`.
    ///
    /// # Errors
    /// A replica that does not start within a minute (its log is in `DATA/server.log`).
    pub async fn start(
        bin: &Path,
        dir: &Path,
        database_url: &str,
        n: usize,
        extra: &[String],
    ) -> Result<Replicas, KitError> {
        let mut replicas = Vec::new();
        let mut extra = extra.to_vec();
        for i in 0..n.max(1) {
            let listen = replica_listen(i)?;
            let url = Url::parse(&format!("https://{listen}/")).map_err(|e| kit("url")(&e))?;
            // Every replica advertises them all to the clients it enrolls.
            extra.extend(["--replica-url".to_owned(), url.to_string()]);
            replicas.push(Replica {
                url,
                data_dir: dir.join(format!("replica-{}", i + 1)),
                listen,
                child: None,
            });
        }
        let mut set = Replicas {
            replicas,
            secrets: FirstSecrets::default(),
            ca_pem: Vec::new(),
            bin: bin.to_owned(),
            database_url: database_url.to_owned(),
            extra,
        };
        for i in 0..set.replicas.len() {
            set.spawn(i)?;
            if i == 0 {
                set.secrets = set.first_secrets().await?;
                let ca = set.replicas[0].data_dir.join("tls/ca.pem");
                set.ca_pem = std::fs::read(&ca).map_err(|e| kit("replica CA")(&e))?;
            }
            set.wait_healthy(i).await?;
        }
        Ok(set)
    }

    fn spawn(&mut self, i: usize) -> Result<(), KitError> {
        let r = &mut self.replicas[i];
        std::fs::create_dir_all(&r.data_dir).map_err(|e| kit("replica data")(&e))?;
        // Every replica has the same key passphrase: the CA's key is stored encrypted with it.
        let passphrase = r.data_dir.join("key-passphrase");
        std::fs::write(&passphrase, format!("{PASSPHRASE}\n"))
            .map_err(|e| kit("replica key passphrase")(&e))?;
        let file = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(r.data_dir.join(name))
                .map_err(|e| kit("replica log")(&e))
        };
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--listen")
            .arg(r.listen.to_string())
            .arg("--data-dir")
            .arg(&r.data_dir)
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--key-passphrase-file")
            .arg(&passphrase)
            .args(&self.extra)
            .env("CASCADE_LOG", "info")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file("stdout.log")?)
            .stderr(file("server.log")?)
            .spawn()
            .map_err(|e| kit("start cascade server")(&e))?;
        r.child = Some(child);
        Ok(())
    }

    async fn first_secrets(&mut self) -> Result<FirstSecrets, KitError> {
        let out = self.replicas[0].data_dir.join("stdout.log");
        for _ in 0..600 {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let (Some(password), Some(admin_token), Some(enroll_token)) = (
                after(&text, "admin user"),
                after(&text, "its API token"),
                after(&text, "enrollment token for clients"),
            ) {
                let admin_user = text
                    .lines()
                    .find_map(|l| l.strip_prefix("admin user `"))
                    .and_then(|l| l.split('`').next())
                    .unwrap_or("admin")
                    .to_owned();
                return Ok(FirstSecrets {
                    admin_user,
                    admin_password: password,
                    admin_token,
                    enroll_token,
                });
            }
            self.exited(0)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(kit("replica 1")(&"no first-start secrets within a minute"))
    }

    /// An error when replica `i` has exited.
    fn exited(&mut self, i: usize) -> Result<(), KitError> {
        let r = &mut self.replicas[i];
        if let Some(c) = r.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let log =
                    std::fs::read_to_string(r.data_dir.join("server.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                return Err(kit("replica")(&format!(
                    "replica {} exited ({status}); last log lines, newest first:\n{tail}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    async fn wait_healthy(&mut self, i: usize) -> Result<(), KitError> {
        let client = self.client(i)?;
        for _ in 0..600 {
            if client.health().await.is_ok() {
                return Ok(());
            }
            self.exited(i)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(kit("replica")(&format!(
            "replica {} not healthy within a minute",
            i + 1
        )))
    }

    /// Every replica's URL, in order.
    pub fn urls(&self) -> Vec<Url> {
        self.replicas.iter().map(|r| r.url.clone()).collect()
    }

    /// A client of replica `i` trusting the replicas' CA.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn client(&self, i: usize) -> Result<Client, KitError> {
        let ca = (!self.ca_pem.is_empty()).then(|| self.ca_pem.clone());
        let ca = ca.or_else(|| std::fs::read(self.replicas[0].data_dir.join("tls/ca.pem")).ok());
        Client::builder(self.replicas[i].url.clone())
            .trust_ca_pem(ca)
            .build()
            .map_err(|e| kit("client")(&e))
    }

    /// The admin API of replica `i`.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn admin(&self, i: usize) -> Result<AdminClient, KitError> {
        Ok(self.client(i)?.admin(self.secrets.admin_token.clone()))
    }

    /// Kills replica `i` with SIGKILL (and reaps it).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.replicas[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts replica `i` again (after [`Replicas::kill`]) and waits until it answers.
    ///
    /// # Errors
    /// It does not start.
    pub async fn restart(&mut self, i: usize) -> Result<(), KitError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(i).await
    }

    /// Stops every replica (SIGKILL).
    pub fn stop(&mut self) {
        for i in 0..self.replicas.len() {
            self.kill(i);
        }
    }

    /// Requests replica `i` has answered (its `/metrics`: the count of every request
    /// duration series).
    ///
    /// # Errors
    /// It does not answer.
    pub async fn requests(&self, i: usize) -> Result<u64, KitError> {
        let text = self
            .client(i)?
            .metrics()
            .await
            .map_err(|e| kit("metrics")(&e))?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("cascade_http_request_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u64>().ok())
            .sum())
    }

    /// CPU time replica `i` has used, user plus system (`/proc/PID/stat`).
    ///
    /// # Errors
    /// It does not run, or `/proc` cannot be read.
    pub fn cpu(&self, i: usize) -> Result<Duration, KitError> {
        let pid = self.replicas[i]
            .pid()
            .ok_or_else(|| kit("cpu")(&format!("replica {} is not running", i + 1)))?;
        process_cpu(pid)
    }
}

/// CPU time of process `pid`, user plus system, from `/proc/PID/stat`.
///
/// # Errors
/// `/proc` cannot be read.
pub fn process_cpu(pid: u32) -> Result<Duration, KitError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| kit("cpu")(&e))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |k: usize| {
        fields
            .get(k)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 (state is field 3).
    let total = ticks(11) + ticks(12);
    // The kernel's USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(total * 10))
}
