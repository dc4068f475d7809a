//! Real nginx for the tests that run a configuration block of `docs/operating.md` as it is
//! written there: the block taken from the document between its markers, the binary (the
//! test fails, loudly, when nginx is missing, rather than pass without testing anything), and
//! a guard that stops nginx however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The ```` ```nginx ```` block of `docs/operating.md` between `<!-- MARKER: begin -->` and
/// `<!-- MARKER: end -->`.
///
/// # Panics
/// When the document, a marker or the block is missing.
#[must_use]
pub fn documented_block(marker: &str) -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operating.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let begin = text
        .find(&format!("<!-- {marker}: begin -->"))
        .unwrap_or_else(|| panic!("no begin marker {marker} in operating.md"));
    let end = text
        .find(&format!("<!-- {marker}: end -->"))
        .unwrap_or_else(|| panic!("no end marker {marker} in operating.md"));
    let block = &text[begin..end];
    let start = block
        .find("```nginx\n")
        .unwrap_or_else(|| panic!("no nginx block inside {marker}"))
        + "```nginx\n".len();
    let stop = block[start..]
        .find("```")
        .unwrap_or_else(|| panic!("nginx block inside {marker} not closed"))
        + start;
    block[start..stop].to_owned()
}

/// The nginx binary; `what` says what the test runs, for the message when it is missing.
///
/// # Panics
/// When nginx is not installed.
#[must_use]
pub fn binary(what: &str) -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "nginx is not installed: this test runs {what} for real. Install it with \
         scripts/nginx (apt-get install nginx), which scripts/test runs."
    );
}

/// Stops nginx when the test ends, however it ends.
#[derive(Debug)]
pub struct Nginx(pub Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (and cache processes) and then exits. A SIGKILL
        // would leave them running, orphaned, still holding the listening socket.
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id().cast_signed()) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) {
            if std::time::Instant::now() > deadline {
                let _ = self.0.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.0.wait();
    }
}

/// nginx in the foreground, everything it writes below `dir` (made reachable for workers that
/// run as an unprivileged user: `dir`, `dir/tmp` and `dir/logs` mode 0777), with `http` as the
/// body of its `http` block after the temp and log paths; `what` as for [`binary`].
///
/// # Panics
/// When nginx is missing, or `dir` or the configuration cannot be written.
#[must_use]
pub fn run(dir: &Path, what: &str, http: &str) -> Nginx {
    use std::os::unix::fs::PermissionsExt as _;
    let open = || std::fs::Permissions::from_mode(0o777);
    std::fs::set_permissions(dir, open()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for sub in ["tmp", "logs"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        std::fs::set_permissions(&p, open()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
         events {{ worker_connections 64; }}\nhttp {{\n\
         access_log {d}/logs/access.log;\nclient_body_temp_path {d}/tmp/body;\n\
         proxy_temp_path {d}/tmp/proxy;\nfastcgi_temp_path {d}/tmp/fastcgi;\n\
         uwsgi_temp_path {d}/tmp/uwsgi;\nscgi_temp_path {d}/tmp/scgi;\n{http}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("{}: {e}", conf_path.display()));
    let child = Command::new(binary(what))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting nginx: {e}"));
    Nginx(child)
}
