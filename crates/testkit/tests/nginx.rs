//! The nginx configuration of `docs/operating.md#nginx-as-a-url-source`, run with real nginx
//! (taken from the document itself) as a client's only source: the client installs through
//! it, then installs a newer version published later (so `timestamp.json` was not served
//! stale); a blob is cached (`HIT` the second time) and `timestamp.json` never is.
//!
//! nginx must be installed (`scripts/nginx` installs it; `scripts/test` runs that first): the
//! test fails, loudly, without it, rather than pass without testing anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use cascade_testkit::nginx::{self, Nginx};

use cascade_core::report::Outcome;
use cascade_core::Category;

/// nginx in the foreground with the documented block, listening on `listen` in front of
/// `server`, everything it writes below `dir`.
fn start_nginx(dir: &Path, listen: &str, server: &str, ca_file: &Path) -> Nginx {
    use std::os::unix::fs::PermissionsExt as _;
    // Workers may run as an unprivileged user: let them reach the cache (nginx::run does the
    // temp and log dirs).
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    std::fs::set_permissions(dir.join("cache"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = dir.display();
    let server_block = nginx::documented_block("nginx-url-source")
        .replace("CACHE_DIR", &format!("{d}/cache"))
        .replace("LISTEN", listen)
        .replace("CASCADE_SERVER", server)
        .replace("CA_FILE", &ca_file.display().to_string())
        .replace("SERVER_NAME", "localhost");
    nginx::run(dir, "the documented nginx configuration", &server_block)
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    let cache = resp
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    (status, cache)
}

#[tokio::test]
async fn documented_nginx_cache_works_as_a_url_source() {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"v1")
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.3.4:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.3.4:{port}");
    let server = fleet
        .url
        .as_str()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let ngx_dir = tmp.path().join("nginx");
    std::fs::create_dir_all(&ngx_dir).unwrap();
    let ca_file = ngx_dir.join("ca.pem");
    std::fs::write(&ca_file, fleet.ca_pem().unwrap()).unwrap();
    let _nginx = start_nginx(&ngx_dir, &listen, server, &ca_file);
    let base = format!("http://{listen}/repo/");
    cascade_testkit::wait_until(Duration::from_secs(10), || async {
        reqwest::get(format!("{base}site/metadata/1.root.json"))
            .await
            .is_ok()
    })
    .await
    .unwrap();

    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         [fallback]\ncomponents_from_server = false\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nurl = \"{base}\"\n",
        up = upstream.url().unwrap(),
    );
    fleet.apply_policy(&policy).await.unwrap();
    fleet.mirror().await.unwrap();
    let ip: IpAddr = "127.0.1.11".parse().unwrap();
    let data = tmp.path().join("client");
    let cfg = fleet.agent_config(&data, ip, None, Some(&root));
    let installed = data.join("installed/components/patterns/current/patterns.db");

    let r = cascade_testkit::update_once(cfg.clone()).await.unwrap();
    let components: Vec<_> = r
        .attempts
        .iter()
        .filter(|a| a.category == Some(Category::Components))
        .map(|a| (a.source.clone(), a.outcome))
        .collect();
    assert_eq!(components, vec![(format!("url:{base}"), Outcome::Ok)]);
    assert_eq!(std::fs::read(&installed).unwrap(), b"v1");

    // A version published later is seen through the cache: timestamp.json is not cached.
    upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", b"v2")],
        )
        .await
        .unwrap();
    fleet.mirror().await.unwrap();
    let r = cascade_testkit::update_once(cfg).await.unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.attempts);
    assert_eq!(std::fs::read(&installed).unwrap(), b"v2");

    let timestamp = format!("{base}upstream/metadata/timestamp.json");
    assert_eq!(get(&timestamp).await, (200, "BYPASS".to_owned()));
    assert_eq!(get(&timestamp).await, (200, "BYPASS".to_owned()));
    let snapshot = format!("{base}upstream/metadata/1.root.json");
    get(&snapshot).await;
    assert_eq!(get(&snapshot).await, (200, "HIT".to_owned()));
}
