//! Enrollment trusts nothing on first contact (`docs/architecture.md#trust-model`): the
//! enrollment token carries the SHA-256 of the server's CA certificate and of the site and
//! upstream `1.root.json`; an agent given only the token and the server's URL pins all
//! three, and refuses to enroll with a server whose CA (a man in the middle, another
//! server) or whose root (one planted on the server) does not match the token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use cascade_agent::daemon::AgentConfig;
use cascade_client::proto::{EnrollmentTokenText, NewEnrollmentToken, Sha256Digest};
use cascade_core::report::Outcome;
use cascade_repo::fsutil::sha256_hex;
use cascade_testkit::{update_once, Fleet, Upstream};

const V1: &[u8] = b"patterns version one";

/// Upstream with `patterns` 1 mirrored by the server, and a token issued after the mirror
/// (so it carries all three hashes).
async fn world(dir: &Path) -> (Upstream, Fleet, String) {
    let (upstream, _root, fleet) = cascade_testkit::upstream_and_server(dir, V1).await.unwrap();
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{}\"\n",
        upstream.url().unwrap()
    );
    fleet.apply_policy(&policy).await.unwrap();
    fleet.mirror().await.unwrap();
    let token = fleet
        .api()
        .create_enrollment_token(&NewEnrollmentToken {
            name: "pins".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .token;
    (upstream, fleet, token)
}

/// An agent given only the server's URL and `token` (no roots out of band).
fn only_token(fleet: &Fleet, data: &Path, token: &str) -> AgentConfig {
    let ip: IpAddr = "127.0.1.1".parse().unwrap();
    let mut cfg = fleet.agent_config(data, ip, None, None);
    cfg.pinned_roots.clear();
    cfg.enroll_token = Some(token.to_owned());
    cfg
}

fn pinned(data: &Path, domain: &str) -> String {
    sha256_hex(&std::fs::read(data.join(format!("trust/{domain}/pinned-root.json"))).unwrap())
}

// The token names the CA and both roots; the agent pins exactly those and installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pins_the_ca_and_roots_its_token_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (_up, fleet, token) = world(tmp.path()).await;
    let parsed: EnrollmentTokenText = token.parse().unwrap();
    let ca = fleet.ca_pem().unwrap();
    assert_eq!(parsed.ca_sha256.unwrap().to_hex(), sha256_hex(ca));
    let site = parsed
        .site_root_sha256
        .expect("the token names the site root");
    let upstream = parsed
        .upstream_root_sha256
        .expect("the token names the upstream root");

    let data = tmp.path().join("agent");
    let report = update_once(only_token(&fleet, &data, &token))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    assert_eq!(std::fs::read(data.join("server-ca.pem")).unwrap(), ca);
    assert_eq!(pinned(&data, "site"), site.to_hex());
    assert_eq!(pinned(&data, "upstream"), upstream.to_hex());
}

// Another server (a man in the middle with its own CA) at the URL the agent is given: the
// agent refuses it and does not enroll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_ca_is_not_the_tokens_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_up, fleet, token) = world(tmp.path()).await;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let other = cascade_testkit::start_fleet(&tmp.path().join("other"), loopback, None)
        .await
        .unwrap();
    let data = tmp.path().join("agent");
    let mut cfg = only_token(&fleet, &data, &token);
    cfg.server = Some(other.url.clone());
    let err = update_once(cfg).await.unwrap_err();
    assert!(
        err.to_string().contains("CA certificate has SHA-256"),
        "{err}"
    );
    assert!(!data.join("identity.json").exists(), "enrolled anyway");
    assert!(!data.join("server-ca.pem").exists(), "pinned the wrong CA");
}

// A root planted on the server after the token was issued (the upstream's), or a token
// naming another site root: the agent refuses to enroll and pins nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_whose_hash_is_not_the_tokens_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_up, fleet, token) = world(tmp.path()).await;

    // A token naming another site root.
    let mut wrong_site: EnrollmentTokenText = token.parse().unwrap();
    wrong_site.site_root_sha256 = Some(Sha256Digest([7; 32]));
    let data = tmp.path().join("agent-site");
    let err = update_once(only_token(&fleet, &data, &wrong_site.to_string()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("site 1.root.json has SHA-256"),
        "{err}"
    );
    assert!(!data.join("identity.json").exists(), "enrolled anyway");
    assert!(!data.join("trust/site/pinned-root.json").exists());

    // A planted upstream root: another repository's, at the path the server serves.
    let planted = Upstream::create(&tmp.path().join("planted"), None)
        .await
        .unwrap();
    let served = fleet.data_dir.join("repo/upstream/metadata/1.root.json");
    std::fs::remove_file(&served).unwrap();
    std::fs::write(&served, planted.root()).unwrap();
    let data = tmp.path().join("agent-upstream");
    let err = update_once(only_token(&fleet, &data, &token))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("upstream 1.root.json has SHA-256"),
        "{err}"
    );
    assert!(!data.join("identity.json").exists(), "enrolled anyway");
    assert!(!data.join("trust/upstream/pinned-root.json").exists());
}
