//! The reference a paced benchmark runs beside cascade: nginx over TLS on the same machine,
//! answering the same requests from its configuration alone (no work behind them), so that a
//! figure reads as a ratio to what the cheapest HTTP server costs here for the same
//! connections at the same pace (the project's rule: speed is a ratio against a reference run
//! in the same script; BENCHMARKS.md).
//!
//! Its certificate comes from a CA made here for the run (rcgen), which the bench's reference
//! clients trust; TLS 1.3 with session tickets and a shared session cache, as the server's
//! resumption (docs/operating.md#tls-session-resumption); keep-alive connections idle up to
//! 10 s, the server's header-read timeout. Its CPU is that of its master and workers, from
//! `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_testkit::nginx::Nginx;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use url::Url;

use crate::procs::{cpu_us, free_port};

/// A running nginx, stopped when dropped (testkit's guard: `SIGTERM` to its master, which
/// stops its workers).
pub struct NginxTls {
    nginx: Nginx,
    /// Its base URL (`https://127.0.0.1:PORT/`).
    pub url: Url,
    /// The CA its certificate is signed by (PEM), for clients to trust.
    pub ca_pem: Vec<u8>,
    /// `nginx -v`.
    pub version: String,
}

/// The nginx binary: `given`, else the first on `PATH` (as `command -v` finds it: the
/// device run puts its packed nginx there), else the usual places.
///
/// # Errors
/// When there is none.
pub fn nginx_bin(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/usr/bin", "/usr/local/sbin"]
            .into_iter()
            .map(PathBuf::from),
    );
    for d in dirs {
        let p = d.join("nginx");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "nginx not found (the reference run): install it (apt-get install nginx-light), give \
         --nginx-bin, or run without a reference (--reference none)"
    )
}

/// A CA and a certificate for 127.0.0.1 signed by it: (chain PEM, key PEM, CA PEM).
fn certificate() -> Result<(String, String, String)> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "cascade bench reference CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok((
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        leaf_key.serialize_pem(),
        ca_cert.pem(),
    ))
}

impl NginxTls {
    /// Starts `bin` in the foreground on a free port of 127.0.0.1 with everything below
    /// `dir`, `workers` worker processes (`auto`: one per CPU), and `locations` (nginx
    /// `location` blocks) as its one server's answers; returns once it accepts connections.
    ///
    /// # Errors
    /// When a file cannot be written, nginx cannot be started, or it exits or does not
    /// listen within 10 s.
    pub fn start(bin: &Path, dir: &Path, workers: Option<usize>, locations: &str) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        for sub in ["", "tmp", "logs"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).with_context(|| p.display().to_string())?;
            // Workers run as an unprivileged user when the master is root.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777))?;
        }
        let (chain, key, ca) = certificate()?;
        std::fs::write(dir.join("chain.pem"), chain)?;
        std::fs::write(dir.join("key.pem"), key)?;
        let addr = free_port(std::net::Ipv4Addr::LOCALHOST)?;
        let d = dir.display();
        let workers = workers.map_or_else(|| "auto".to_owned(), |n| n.to_string());
        let conf = format!(
            "worker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             worker_rlimit_nofile 65536;\n\
             events {{ worker_connections 16384; }}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {d}/tmp/body;\n\
             proxy_temp_path {d}/tmp/proxy;\nfastcgi_temp_path {d}/tmp/fastcgi;\n\
             uwsgi_temp_path {d}/tmp/uwsgi;\nscgi_temp_path {d}/tmp/scgi;\n\
             keepalive_timeout 10s;\nkeepalive_requests 1000000;\n\
             ssl_protocols TLSv1.3;\nssl_session_cache shared:SSL:16m;\nssl_session_tickets on;\n\
             server {{\nlisten {addr} ssl backlog=4096;\n\
             ssl_certificate {d}/chain.pem;\nssl_certificate_key {d}/key.pem;\n\
             {locations}\n}}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let version = Command::new(bin)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .with_context(|| format!("running {}", bin.display()))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("stderr.log"))?))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut nginx = NginxTls {
            nginx: Nginx(child),
            url: Url::parse(&format!("https://{addr}/"))?,
            ca_pem: ca.into_bytes(),
            version,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = nginx.nginx.0.try_wait()? {
                bail!("nginx exited ({status}); see {d}/stderr.log and {d}/logs/error.log");
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on {addr} within 10 s; see {d}/logs/error.log");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    /// CPU time (user + system, µs) of its master and workers.
    #[must_use]
    pub fn cpu_us(&self) -> u64 {
        let master = self.nginx.0.id();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .map(cpu_us)
            .sum::<u64>()
            + cpu_us(master)
    }
}
