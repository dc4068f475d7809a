//! The harness of the tests that run the `cascade` binary as a real process (the CLI crate's
//! `tests/`): the set-up they share, so each test says only what it checks.
//!
//! - Admin commands against a server: [`admin_fleet`] starts one with its data in
//!   `DIR/server`, [`admin_command`] is `cascade ARGS --server URL` with a token, no config
//!   file and the server's CA, and [`output`] / [`output_with_stdin`] run it off the async
//!   runtime (the server in the test's process keeps answering meanwhile).
//! - Agents: [`agent_fleet`] is [`upstream_and_server`] with the upstream mirrored into the
//!   server, so an agent finds `components/patterns` version 1 there; [`enroll_args`] and
//!   [`agent_once_args`] are the command lines that enroll an agent with the fleet;
//!   [`publish_patterns`] releases the next version; [`installed_patterns`] and
//!   [`client_id`] read what an agent's data directory holds.
//!
//! - Commands that name their server themselves (or need none): [`cascade_command`], and
//!   [`output_text`] for what they printed.
//! - Delegated program builds (`docs/operating.md#delegated-program-builds`): a
//!   [`BuildTeam`] made with `cascade repo team-key`, the command lines that delegate to it
//!   ([`BuildTeam::delegate_args`], on a [`SiteRepo`]) and that publish a build it signs
//!   ([`BuildTeam::publish_args`]).
//! - Replicas (`docs/operating.md#replicas`): [`replicas_on_postgres`] starts them on a fresh
//!   PostgreSQL database (failing, never skipping, without one); [`patterns_upstream`] and
//!   [`publish_upstream_patterns`] are the upstream they mirror.
//!
//! The binary's path is the caller's (`env!("CARGO_BIN_EXE_cascade")` exists only in the
//! CLI crate's tests). Every address is on 127.0.0.0/8.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cascade_core::Category;

use crate::postgres::Database;
use crate::replicas::Replicas;
use crate::{kit, start_fleet, upstream_and_server, Fleet, KitError, Upstream};

/// A fresh server for the admin commands' tests: its data in `dir/server`, on 127.0.0.1 at a
/// free port, no upstream, cheap credential hashing ([`start_fleet`]).
///
/// # Errors
/// When the server cannot open its store or bind.
pub async fn admin_fleet(dir: &Path) -> Result<Fleet, KitError> {
    start_fleet(
        &dir.join("server"),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
    )
    .await
}

/// `exe ARGS --server URL` with `token` as the admin token (`CASCADE_TOKEN`), no config file
/// (`CASCADE_CONFIG` names none), the fleet's CA trusted (`CASCADE_CA`) and `CASCADE_SERVER`
/// unset, so only what the test gives counts.
pub fn admin_command(exe: &str, fleet: &Fleet, token: &str, args: &[&str]) -> Command {
    let mut cmd = cascade_command(exe, token, args);
    cmd.arg("--server")
        .arg(fleet.url.as_str())
        .env("CASCADE_CA", fleet.data_dir.join("tls/ca.pem"));
    cmd
}

/// `exe ARGS` with `token` as the admin token (`CASCADE_TOKEN`), no config file
/// (`CASCADE_CONFIG` names none) and `CASCADE_SERVER`, `CASCADE_CA` and
/// `CASCADE_KEY_PASSPHRASE` unset: for commands that name their server in `args`, or need
/// none (`repo team-key`, `repo delegate --repo`).
pub fn cascade_command<I, S>(exe: &str, token: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("CASCADE_TOKEN", token)
        .env("CASCADE_CONFIG", "/nonexistent/cascade-cli.toml")
        .env_remove("CASCADE_SERVER")
        .env_remove("CASCADE_CA")
        .env_remove("CASCADE_KEY_PASSPHRASE");
    cmd
}

/// Runs `cmd` to its end on a blocking thread and returns its status and output.
///
/// # Errors
/// When it cannot be started (or the blocking thread is lost).
pub async fn output(mut cmd: Command) -> std::io::Result<Output> {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(std::io::Error::other)?
}

/// [`output`] with `stdin` written to the command's standard input.
///
/// # Errors
/// When it cannot be started or its input not written.
pub async fn output_with_stdin(mut cmd: Command, stdin: &str) -> std::io::Result<Output> {
    use std::io::Write as _;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no standard input"))?
            .write_all(stdin.as_bytes())?;
        child.wait_with_output()
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A command's output as text, for messages and `contains` checks.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command's standard output then its standard error, as text.
pub fn output_text(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// [`upstream_and_server`] (`components/patterns` version 1 = `v1` upstream, a server in
/// `dir/server` pinning the upstream's root) with the policy's `activeupdate_url` set to the
/// upstream and the upstream mirrored once: an agent enrolled now installs version 1.
/// Returns the upstream, its root's path and the server.
///
/// # Errors
/// Any part that cannot be created, started or mirrored.
pub async fn agent_fleet(dir: &Path, v1: &[u8]) -> Result<(Upstream, PathBuf, Fleet), KitError> {
    let (upstream, root, fleet) = upstream_and_server(dir, v1).await?;
    let url = upstream
        .url()
        .ok_or_else(|| kit("upstream")(&"it is not served"))?;
    fleet
        .apply_policy(&format!("activeupdate_url = \"{url}\""))
        .await?;
    fleet.mirror().await?;
    Ok((upstream, root, fleet))
}

/// Publishes `components/patterns` `version` (one file, `patterns.db` = `bytes`) upstream and
/// mirrors it into the server.
///
/// # Errors
/// When publishing or mirroring fails.
pub async fn publish_patterns(
    upstream: &Upstream,
    fleet: &Fleet,
    version: &str,
    bytes: &[u8],
) -> Result<(), KitError> {
    publish_upstream_patterns(upstream, version, bytes).await?;
    fleet.mirror().await?;
    Ok(())
}

/// An upstream on 127.0.0.1 (in `dir/upstream`) publishing `components/patterns` version 1
/// (one file, `patterns.db` = `v1`), its root written to `dir/upstream-root.json`. Returns
/// the upstream and the root's path.
///
/// # Errors
/// When it cannot be created, started or published to.
pub async fn patterns_upstream(dir: &Path, v1: &[u8]) -> Result<(Upstream, PathBuf), KitError> {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let upstream = Upstream::create(&dir.join("upstream"), Some(loopback)).await?;
    publish_upstream_patterns(&upstream, "1", v1).await?;
    let root = dir.join("upstream-root.json");
    upstream.write_root(&root)?;
    Ok((upstream, root))
}

/// Publishes `components/patterns` `version` (one file, `patterns.db` = `bytes`) upstream,
/// mirrored by no one yet.
///
/// # Errors
/// When publishing fails.
pub async fn publish_upstream_patterns(
    upstream: &Upstream,
    version: &str,
    bytes: &[u8],
) -> Result<(), KitError> {
    upstream
        .publish(
            Category::Components,
            "patterns",
            version,
            &[("patterns.db", bytes)],
        )
        .await
}

/// The arguments that enroll an agent with `fleet`: `--server URL --enroll-token TOKEN
/// --upstream-root ROOT --site-root SITE_ROOT` (the site repository's first root).
pub fn enroll_args(fleet: &Fleet, upstream_root: &Path) -> Vec<OsString> {
    vec![
        "--server".into(),
        fleet.url.as_str().into(),
        "--enroll-token".into(),
        fleet.enroll.clone().into(),
        "--upstream-root".into(),
        upstream_root.into(),
        "--site-root".into(),
        fleet.site.public_dir().join("metadata/1.root.json").into(),
    ]
}

/// The arguments of one update cycle of an agent of `fleet`: `agent --once --bind-ip IP
/// --data-dir DATA` and [`enroll_args`].
pub fn agent_once_args(
    data: &Path,
    bind_ip: &str,
    fleet: &Fleet,
    upstream_root: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["agent", "--once", "--bind-ip", bind_ip, "--data-dir"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(data.into());
    args.extend(enroll_args(fleet, upstream_root));
    args
}

/// The installed `components/patterns` `patterns.db` of the agent whose data is in `data`,
/// if there is one.
pub fn installed_patterns(data: &Path) -> Option<Vec<u8>> {
    std::fs::read(data.join("installed/components/patterns/current/patterns.db")).ok()
}

/// The client id the agent whose data is in `data` enrolled as, once it has.
pub fn client_id(data: &Path) -> Option<String> {
    let bytes = std::fs::read(data.join("identity.json")).ok()?;
    let id: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(id["client_id"].as_str()?.to_owned())
}

/// Where `cascade repo delegate` changes the site repository.
#[derive(Debug, Clone, Copy)]
pub enum SiteRepo<'a> {
    /// The repository's directory (`--repo DIR`): signed on this machine with its targets key.
    Dir(&'a Path),
    /// The server at `url`, trusted through the CA certificate in `ca` (`--server URL --ca
    /// CA`): it signs, through the one writer of the site repository.
    Server {
        /// The server's base URL.
        url: &'a str,
        /// Its CA certificate's file.
        ca: &'a Path,
    },
}

/// A build team's key for a TUF delegation (`cascade repo team-key`): it signs its builds
/// as `role` on its own side; the server never holds the key.
#[derive(Debug, Clone)]
pub struct BuildTeam {
    /// The role it signs as.
    pub role: String,
    /// Its private key's file.
    pub key: PathBuf,
    /// Its public key's file (what `repo delegate --key` takes).
    pub public: PathBuf,
}

impl BuildTeam {
    /// `exe repo team-key --out DIR/NAME.pk8` (a [`cascade_command`] with `token`): a team
    /// signing as `role` with the new key.
    ///
    /// # Errors
    /// The directory cannot be made or the command fails (its output is in the error).
    pub async fn create(
        exe: &str,
        token: &str,
        dir: &Path,
        name: &str,
        role: &str,
    ) -> Result<BuildTeam, KitError> {
        std::fs::create_dir_all(dir).map_err(|e| kit("team key directory")(&e))?;
        let key = dir.join(format!("{name}.pk8"));
        let args: [&OsStr; 4] = [
            "repo".as_ref(),
            "team-key".as_ref(),
            "--out".as_ref(),
            key.as_ref(),
        ];
        let out = output(cascade_command(exe, token, args))
            .await
            .map_err(|e| kit("cascade repo team-key")(&e))?;
        if !out.status.success() {
            return Err(kit("cascade repo team-key")(&output_text(&out)));
        }
        Ok(BuildTeam {
            role: role.to_owned(),
            public: dir.join(format!("{name}.pk8.pub.json")),
            key,
        })
    }

    /// `repo delegate (--repo DIR | --server URL --ca CA) --role ROLE --key PUBLIC --paths
    /// PATHS`: `site`'s targets delegate `paths` to this team's key.
    pub fn delegate_args(&self, site: SiteRepo<'_>, paths: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["repo".into(), "delegate".into()];
        match site {
            SiteRepo::Dir(dir) => args.extend(["--repo".into(), dir.into()]),
            SiteRepo::Server { url, ca } => {
                args.extend(["--server".into(), url.into(), "--ca".into(), ca.into()]);
            }
        }
        args.extend([
            "--role".into(),
            self.role.clone().into(),
            "--key".into(),
            self.public.clone().into(),
            "--paths".into(),
            paths.into(),
        ]);
        args
    }

    /// Writes a build holding `bytes` as `dir/builds/NAME/VERSION/tool.bin` and returns the
    /// team's `publish --server URL --ca CA --category programs --delegated-key KEY --role
    /// ROLE NAME VERSION FILE` of it.
    ///
    /// # Errors
    /// The build cannot be written.
    pub fn publish_args(
        &self,
        server: &str,
        ca: &Path,
        dir: &Path,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<Vec<OsString>, KitError> {
        let build = dir.join("builds").join(name).join(version);
        std::fs::create_dir_all(&build).map_err(|e| kit("build directory")(&e))?;
        let file = build.join("tool.bin");
        std::fs::write(&file, bytes).map_err(|e| kit("build")(&e))?;
        Ok(vec![
            "publish".into(),
            "--server".into(),
            server.into(),
            "--ca".into(),
            ca.into(),
            "--category".into(),
            "programs".into(),
            "--delegated-key".into(),
            self.key.clone().into(),
            "--role".into(),
            self.role.clone().into(),
            name.into(),
            version.into(),
            file.into(),
        ])
    }
}

/// [`Replicas`] of the `cascade` binary on a fresh PostgreSQL database ([`Database`]);
/// [`PgReplicas::finish`] stops them and drops the database. It reads as the [`Replicas`]
/// (`r.replicas[i]`, `r.admin(i)`, `r.kill(i)`). A test that panics prints every replica's
/// log.
#[derive(Debug)]
pub struct PgReplicas {
    replicas: Replicas,
    database: Option<Database>,
}

/// Starts `n` replicas of `exe` ([`Replicas::start`], data under `dir`, each with the further
/// server arguments `extra`) on a fresh PostgreSQL database ([`Database::new`]: the cluster
/// `CASCADE_TEST_POSTGRES_URL` names, or a throwaway one).
///
/// # Errors
/// No PostgreSQL (never a skip: the error says how to get one), or a replica that does not
/// start.
pub async fn replicas_on_postgres(
    exe: &str,
    dir: &Path,
    n: usize,
    extra: &[String],
) -> Result<PgReplicas, KitError> {
    let database = Database::new().await?;
    let replicas = Replicas::start(Path::new(exe), dir, &database.url, n, extra).await?;
    Ok(PgReplicas {
        replicas,
        database: Some(database),
    })
}

impl PgReplicas {
    /// Replica `i`'s log (`DATA/server.log`) so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.replicas.replicas[i].data_dir.join("server.log"))
            .unwrap_or_default()
    }

    /// Sets replica `i`'s policy (the fleet's, shared through the database) to `toml`.
    ///
    /// # Errors
    /// The policy does not parse or the server refuses it.
    pub async fn apply_policy(&self, i: usize, toml: &str) -> Result<(), KitError> {
        let policy = cascade_core::Policy::from_toml(toml).map_err(|e| kit("policy")(&e))?;
        self.replicas
            .admin(i)?
            .put_policy(&cascade_core::PolicyDoc::from_policy(&policy), None)
            .await
            .map(|_| ())
            .map_err(|e| kit("admin call")(&e))
    }

    /// Stops every replica and drops the database.
    ///
    /// # Errors
    /// The database's cluster does not answer.
    pub async fn finish(mut self) -> Result<(), KitError> {
        self.replicas.stop();
        match self.database.take() {
            Some(database) => database.drop_db().await,
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for PgReplicas {
    type Target = Replicas;
    fn deref(&self) -> &Replicas {
        &self.replicas
    }
}

impl std::ops::DerefMut for PgReplicas {
    fn deref_mut(&mut self) -> &mut Replicas {
        &mut self.replicas
    }
}

impl Drop for PgReplicas {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.replicas.replicas.len() {
                eprintln!("--- replica {} log:\n{}", i + 1, self.log(i));
            }
        }
    }
}
