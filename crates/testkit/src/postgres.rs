//! A PostgreSQL database for one test or benchmark run, the way the server's PostgreSQL test
//! gets one (crates/server/tests/api/postgres.rs): a fresh database in the cluster
//! `CASCADE_TEST_POSTGRES_URL` names (`scripts/test` starts one with `scripts/postgres`),
//! dropped afterwards; without the variable, a throwaway cluster of its own from Debian's
//! postgresql package (in a temporary directory, on a 127.0.0.1 port). It never skips: with
//! neither, or a cluster it cannot reach, it fails and says why.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::Connection as _;

use crate::{kit, KitError};

/// The variable that names the cluster to test against.
pub const URL_VAR: &str = "CASCADE_TEST_POSTGRES_URL";

/// A fresh database: in `CASCADE_TEST_POSTGRES_URL`'s cluster (dropped by [`Database::drop_db`])
/// or in a throwaway cluster (stopped on drop).
pub struct Database {
    /// The database's URL.
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _cluster: Option<Cluster>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.url)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// A fresh, empty database (see the module's text).
    ///
    /// # Errors
    /// Neither a reachable `CASCADE_TEST_POSTGRES_URL` nor a PostgreSQL installation to start
    /// a cluster from: the error says which and how to get one.
    pub async fn new() -> Result<Database, KitError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("cascade_test_{}_{nanos}", std::process::id());
        if let Ok(admin_url) = std::env::var(URL_VAR) {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.map_err(|e| {
                kit("PostgreSQL")(&format!("{URL_VAR}={admin_url}: cannot connect: {e}"))
            })?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .map_err(|e| kit("PostgreSQL")(&format!("CREATE DATABASE {name}: {e}")))?;
            let _ = conn.close().await;
            let url = with_database(&admin_url, &name)?;
            return Ok(Database {
                url,
                admin_url: Some(admin_url),
                name,
                _cluster: None,
            });
        }
        let cluster = cluster()?.ok_or_else(|| {
            kit("PostgreSQL")(&format!(
                "PostgreSQL is needed and there is none: set {URL_VAR} to a cluster's URL \
                 (scripts/test starts one with scripts/postgres), or install Debian's \
                 postgresql package so the test can start its own"
            ))
        })?;
        Ok(Database {
            url: cluster.url.clone(),
            admin_url: None,
            name,
            _cluster: Some(cluster),
        })
    }

    /// Drops the database made in the given cluster (a throwaway cluster goes as a whole).
    ///
    /// # Errors
    /// The cluster does not answer.
    pub async fn drop_db(self) -> Result<(), KitError> {
        if let Some(admin_url) = &self.admin_url {
            let mut conn = sqlx::PgConnection::connect(admin_url)
                .await
                .map_err(|e| kit("PostgreSQL")(&e))?;
            sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
                .execute(&mut conn)
                .await
                .map_err(|e| kit("PostgreSQL")(&e))?;
            let _ = conn.close().await;
        }
        Ok(())
    }
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> Result<String, KitError> {
    let mut u =
        url::Url::parse(url).map_err(|e| kit("PostgreSQL")(&format!("{URL_VAR}={url}: {e}")))?;
    u.set_path(&format!("/{name}"));
    Ok(u.to_string())
}

struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args([
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// initdb and postgres refuse to run as root: run them as the `postgres` user then.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command) -> Result<(), KitError> {
    let out = c.output().map_err(|e| kit("PostgreSQL")(&e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(kit("PostgreSQL")(&format!(
        "{c:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

fn cluster() -> Result<Option<Cluster>, KitError> {
    let Some(bin) = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
    }) else {
        return Ok(None);
    };
    let dir = tempfile::tempdir().map_err(|e| kit("PostgreSQL")(&e))?;
    let data = dir.path().join("data");
    if is_root() {
        run({
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(dir.path());
            c
        })?;
    }
    run({
        let mut c = as_postgres(&bin.join("initdb"));
        c.args(["-U", "postgres", "--auth=trust", "-D"]).arg(&data);
        c
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| kit("PostgreSQL")(&e))?
        .port();
    run({
        let mut c = as_postgres(&bin.join("pg_ctl"));
        c.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args([
                "-w",
                "-o",
                &format!("-p {port} -h 127.0.0.1 -k {}", dir.path().display()),
                "start",
            ]);
        c
    })?;
    Ok(Some(Cluster {
        bin,
        data,
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        _dir: dir,
    }))
}
