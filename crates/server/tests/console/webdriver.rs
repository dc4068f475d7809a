//! A minimal W3C `WebDriver` client over reqwest, driving Debian's `chromium` through
//! `chromium-driver` (chromedriver) on 127.0.0.1, headless, with a fresh profile. When the
//! binaries are missing the tests fail loudly, unless `CASCADE_SKIP_BROWSER=1`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long one navigation may take before chromedriver gives up on it.
const PAGE_LOAD_MS: u64 = 60_000;
/// Navigations tried before a page counts as never loading ([`Browser::goto`]).
const NAVIGATION_TRIES: u32 = 3;

fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// Where screenshots go: `target/screenshots/` under the workspace root.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
}

/// Chromedriver on a free port of 127.0.0.1, ready: `(process, base URL)`. The port is free
/// when picked but another process may take it before chromedriver binds it (it then exits),
/// so a driver that exits or is not ready within 30 s is ended and started again on a new
/// port, three times at most; its log (in `dir`) is in the panic message.
async fn start_driver(bin: &Path, http: &reqwest::Client, dir: &Path) -> (Child, String) {
    let log = dir.join("chromedriver.log");
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let base = format!("http://127.0.0.1:{port}");
        // Generous: chromedriver starts slowly on a loaded machine.
        for _ in 0..300 {
            if driver.try_wait().ok().flatten().is_some() {
                break;
            }
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return (driver, base);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = driver.kill();
        let _ = driver.wait();
    }
    panic!(
        "chromedriver did not become ready on three ports; its last log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends chromedriver and the chromium it started: they share a process group of their
    /// own, so a test that panics leaves no browser behind.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a headless chromium session that accepts certificates chaining
    /// to the CA whose public key has the base64 SHA-256 `ca_spki_sha256` (the test server's
    /// private CA) and no other untrusted one, or `None` when the environment asks to skip
    /// (`CASCADE_SKIP_BROWSER=1`). Panics when the binaries are missing.
    pub async fn start(ca_spki_sha256: &str) -> Option<Browser> {
        let driver_bin = find_binary("CHROMEDRIVER", &["chromedriver"]);
        let chrome_bin = find_binary("CHROMIUM", &["chromium", "chromium-browser"]);
        let (Some(driver_bin), Some(chrome_bin)) = (driver_bin, chrome_bin) else {
            if std::env::var("CASCADE_SKIP_BROWSER").as_deref() == Ok("1") {
                eprintln!("CASCADE_SKIP_BROWSER=1 and chromium/chromedriver are missing: browser test skipped");
                return None;
            }
            panic!(
                "chromium and chromium-driver are required for the console browser tests \
                 (apt-get install -y chromium chromium-driver; scripts/browser-tests does it), \
                 or set CASCADE_SKIP_BROWSER=1 to skip them"
            );
        };
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let (driver, base) = start_driver(&driver_bin, &http, profile.path()).await;
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Headless chromium may stop producing frames for a window it thinks hidden
            // (seen after a resize); keep the renderer running at full speed.
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--disable-background-timer-throttling",
            "--no-first-run",
            "--window-size=1280,900",
            format!("--user-data-dir={}", profile.path().display()),
            format!("--ignore-certificate-errors-spki-list={ca_spki_sha256}"),
        ]);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome_bin.display().to_string(), "args": args}
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {resp}"))
            .to_owned();
        let b = Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
        };
        b.cmd(
            Method::POST,
            "/timeouts",
            Some(json!({"implicit": 5000, "pageLoad": PAGE_LOAD_MS})),
        )
        .await;
        Some(b)
    }

    /// Closes the browser session (chromium exits); chromedriver ends on drop.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }

    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if method == Method::POST {
            req = req.json(&body.unwrap_or_else(|| json!({})));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(
            status.is_success(),
            "webdriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    /// Opens `url`. chromedriver sometimes loses its renderer ("Timed out receiving message
    /// from renderer") with no request reaching the server; such a navigation is tried again,
    /// at most [`NAVIGATION_TRIES`] times in all, so a page that really never loads still fails.
    pub async fn goto(&self, url: &str) {
        for attempt in 1..=NAVIGATION_TRIES {
            let resp = self
                .http
                .post(format!("{}/url", self.session))
                .json(&json!({"url": url}))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            if status.is_success() {
                return;
            }
            let timed_out = v["value"]["error"] == "timeout";
            assert!(
                timed_out && attempt < NAVIGATION_TRIES,
                "webdriver POST /url {url} (try {attempt}): {status} {v}"
            );
            eprintln!("navigation to {url} timed out (try {attempt}), trying again: {v}");
        }
    }

    pub async fn url(&self) -> String {
        self.cmd(Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits (up to 5 s) until the address ends with `suffix`.
    pub async fn wait_url(&self, suffix: &str) {
        for _ in 0..50 {
            if self.url().await.ends_with(suffix) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the browser is at {}, not …{suffix}", self.url().await);
    }

    /// The first element matching `css` (panics with the page source when there is none).
    pub async fn find(&self, css: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/element", self.session))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .unwrap();
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.unwrap();
        if !ok {
            let src = self.source().await;
            panic!("no element `{css}` on {}: {v}\n{src}", self.url().await);
        }
        v["value"][ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find `{css}`: unexpected answer {v}"))
            .to_owned()
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(Method::POST, &format!("/element/{e}/click"), None)
            .await;
    }

    /// Clears a field and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(Method::POST, &format!("/element/{e}/clear"), None)
            .await;
        self.cmd(
            Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Waits (up to 5 s, for a navigation to finish) until `css` holds `needle`; its text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let mut last = String::new();
        for _ in 0..50 {
            let resp = self
                .http
                .post(format!("{}/element", self.session))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap();
            let v: Value = resp.json().await.unwrap();
            if let Some(e) = v["value"][ELEMENT].as_str() {
                let t = self
                    .http
                    .get(format!("{}/element/{e}/text", self.session))
                    .send()
                    .await
                    .unwrap();
                let t: Value = t.json().await.unwrap();
                t["value"]
                    .as_str()
                    .unwrap_or_default()
                    .clone_into(&mut last);
                if last.contains(needle) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "`{css}` never held `{needle}` on {} (last text: `{last}`)\n{}",
            self.url().await,
            self.source().await
        );
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.cmd(Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// An element's property (e.g. an input's `value`).
    pub async fn property(&self, css: &str, name: &str) -> Value {
        let e = self.find(css).await;
        self.cmd(Method::GET, &format!("/element/{e}/property/{name}"), None)
            .await
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    pub async fn source(&self) -> String {
        self.cmd(Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Elements that stick out of the window to the right (outside the `.scroll` boxes that
    /// scroll on their own): `tag#id.class (right edge)`; empty when the page fits.
    pub async fn overflowing(&self) -> Vec<String> {
        let v = self
            .execute(
                "var w = document.documentElement.clientWidth, out = [];\
                 document.querySelectorAll('body *').forEach(function (e) {\
                   if (e.parentElement && e.parentElement.closest('.scroll')) return;\
                   var r = e.getBoundingClientRect();\
                   if (r.right > w + 1) out.push(e.tagName.toLowerCase() + '#' + e.id + '.' +\
                     String(e.className) + ' (' + Math.round(r.right) + ' > ' + w + ')');\
                 });\
                 if (document.documentElement.scrollWidth > w + 1) out.push('page scrollWidth ' +\
                   document.documentElement.scrollWidth + ' > ' + w);\
                 return out;",
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The text of the open `confirm()` dialog, waiting up to 5 s for it to open.
    async fn dialog_text(&self) -> String {
        for _ in 0..50 {
            let resp = self
                .http
                .get(format!("{}/alert/text", self.session))
                .send()
                .await
                .unwrap();
            if resp.status().is_success() {
                let v: Value = resp.json().await.unwrap();
                return v["value"].as_str().unwrap_or_default().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no confirmation dialog opened within 5 s");
    }

    /// The text of the open confirmation dialog; accepts it (OK).
    pub async fn accept_dialog(&self) -> String {
        let text = self.dialog_text().await;
        self.cmd(Method::POST, "/alert/accept", Some(json!({})))
            .await;
        text
    }

    /// The text of the open confirmation dialog; dismisses it (Cancel).
    pub async fn dismiss_dialog(&self) -> String {
        let text = self.dialog_text().await;
        self.cmd(Method::POST, "/alert/dismiss", Some(json!({})))
            .await;
        text
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a PNG screenshot of the whole page as `target/screenshots/NAME.png` (the
    /// window grows to the page's height for the shot, then returns to its size).
    pub async fn screenshot(&self, name: &str) {
        let rect = self.cmd(Method::GET, "/window/rect", None).await;
        let script = json!({"script": "return document.documentElement.scrollHeight", "args": []});
        let height = self
            .cmd(Method::POST, "/execute/sync", Some(script))
            .await
            .as_u64()
            .unwrap_or(900);
        let width = u32::try_from(rect["width"].as_u64().unwrap()).unwrap();
        let full = u32::try_from(height.clamp(400, 6000) + 160).unwrap();
        self.resize(width, full).await;
        let b64 = self.cmd(Method::GET, "/screenshot", None).await;
        self.resize(
            width,
            u32::try_from(rect["height"].as_u64().unwrap()).unwrap(),
        )
        .await;
        let png = decode_base64(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Standard base64 (the screenshots' encoding).
fn decode_base64(text: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

// Base64 decodes with and without padding.
#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGk="), b"hi");
    assert_eq!(decode_base64("YWJj"), b"abc");
}
