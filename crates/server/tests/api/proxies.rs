//! Trusted proxies (`docs/operating.md#trusted-proxies`) against a real server: a client's
//! `X-Forwarded-For` is ignored unless the connection comes from a trusted proxy; through real
//! nginx running the documented balancer block (`docs/operating.md#load-balancer`, taken from
//! the document itself), two clients at different addresses are locked out separately, and the
//! audit log, enrollment and the check-in record each client's own address.
//!
//! nginx must be installed (`scripts/nginx` installs it; `scripts/test` runs that first): the
//! test fails, loudly, without it, rather than pass without testing anything.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_testkit::nginx::{self, Nginx};

use cascade_client::proto::{CheckIn, ClientView, EnrollRequest, Enrolled};
use cascade_server::forwarded::{parse_trusted_proxy, TrustedProxies};
use cascade_server::TlsMode;
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;

use crate::harness::{start_tuned, TestServer};

/// The balancer's address: nginx listens there and connects to the server from there
/// (`proxy_bind`); the server's one trusted proxy.
const BALANCER: &str = "127.0.13.10";

fn ip(t: &str) -> IpAddr {
    t.parse().unwrap()
}

/// An HTTPS client trusting `ca_pem` whose connections come from `from`.
fn client_from(from: &str, ca_pem: &[u8]) -> reqwest::Client {
    cascade_client::http_builder(Some(ca_pem))
        .unwrap()
        .local_address(ip(from))
        .build()
        .unwrap()
}

/// Enrolls with the server's enrollment token through `base` from `http`.
async fn enroll(http: &reqwest::Client, base: &str, s: &TestServer, name: &str) -> Enrolled {
    let resp = http
        .post(format!("{base}/api/client/enroll"))
        .bearer_auth(&s.enroll)
        .json(&EnrollRequest {
            name: name.into(),
            domain: None,
            agent_address: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// A check-in that names no address of its own, through `base` from `http`.
async fn check_in(http: &reqwest::Client, base: &str, credential: &str) {
    let resp = http
        .post(format!("{base}/api/client/checkin"))
        .bearer_auth(credential)
        .json(&CheckIn::default())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn client_view(s: &TestServer, id: &str) -> ClientView {
    s.api().client_record(id).await.unwrap()
}

// Without nginx: a client that sends `X-Forwarded-For` itself is recorded at its own address;
// a trusted proxy's header names the client, and enrollment and the check-in see that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_trusted_peer_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |set| {
        set.trusted_proxies = TrustedProxies::new([parse_trusted_proxy(BALANCER).unwrap()]);
    })
    .await;
    let ca = s.ca_pem.clone().unwrap();
    let spoofer = cascade_client::http_builder(Some(&ca))
        .unwrap()
        .local_address(ip("127.0.13.30"))
        .default_headers(
            [(
                "x-forwarded-for".parse().unwrap(),
                "127.0.13.99".parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let e = enroll(&spoofer, &s.url, &s, "spoofer").await;
    check_in(&spoofer, &s.url, &e.credential).await;
    let v = client_view(&s, &e.client_id).await;
    assert_eq!(v.enrolled_from, "127.0.13.30");
    assert_eq!(v.peer_ip.as_deref(), Some("127.0.13.30"));

    let proxy = cascade_client::http_builder(Some(&ca))
        .unwrap()
        .local_address(ip(BALANCER))
        .default_headers(
            [(
                "x-forwarded-for".parse().unwrap(),
                "127.0.13.98, 127.0.13.31".parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let e = enroll(&proxy, &s.url, &s, "behind-proxy").await;
    check_in(&proxy, &s.url, &e.credential).await;
    let v = client_view(&s, &e.client_id).await;
    assert_eq!(v.enrolled_from, "127.0.13.31");
    assert_eq!(v.peer_ip.as_deref(), Some("127.0.13.31"));
}

/// A private CA and a server certificate for `localhost`, 127.0.0.1 and the balancer: the
/// chain file, the key file and the CA (PEM).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "proxies test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        BALANCER.to_owned(),
    ])
    .unwrap();
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let chain = dir.join("chain.pem");
    let key = dir.join("server.key");
    std::fs::write(&chain, format!("{}{}", leaf_cert.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (chain, key, ca_cert.pem().into_bytes())
}

/// nginx in the foreground with the documented balancer block, listening on `listen` in front
/// of the one replica `server`, connecting to it from [`BALANCER`], everything below `dir`.
fn start_nginx(dir: &Path, listen: &str, server: &str, tls: &(PathBuf, PathBuf, PathBuf)) -> Nginx {
    use std::os::unix::fs::PermissionsExt as _;
    let (chain, key, ca) = tls;
    for f in [chain, key, ca] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let block = nginx::documented_block("replicas-nginx")
        .replace(
            "REPLICA_SERVERS",
            &format!("server {server} max_fails=1 fail_timeout=5s;"),
        )
        .replace("LISTEN", listen)
        .replace("CERT_FILE", &chain.display().to_string())
        .replace("KEY_FILE", &key.display().to_string())
        .replace("CA_FILE", &ca.display().to_string())
        .replace("SERVER_NAME", "localhost");
    nginx::run(
        dir,
        "the documented balancer",
        &format!("proxy_bind {BALANCER};\n{block}"),
    )
}

/// `GET /api/policy` with `token` through `base` from `http`: the status and `Retry-After`.
async fn policy_with(http: &reqwest::Client, base: &str, token: &str) -> (u16, Option<String>) {
    let resp = http
        .get(format!("{base}/api/policy"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let retry = resp
        .headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry)
}

/// A token of the right shape for an id that does not exist.
fn guess(i: u32) -> String {
    format!("cascade_adm_{i:016x}_00ff")
}

// Two clients behind real nginx, at 127.0.13.21 and .22: each one's failures count for its own
// address (the balancer's header names it), so one guesser locks out only itself, even when it
// sends an `X-Forwarded-For` naming the other; the audit log, enrollment and check-in record
// each client's address, never the balancer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_clients_are_locked_out_separately() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (chain, key, ca_pem) = certificate(&tls_dir);
    let ca_file = tls_dir.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let data = dir.path().join("data");
    let s = start_tuned(&data, None, None, |set| {
        set.tls = TlsMode::Files {
            cert: chain.clone(),
            key: key.clone(),
        };
        set.trusted_proxies = TrustedProxies::new([parse_trusted_proxy(BALANCER).unwrap()]);
        set.lockout.max_failures = 100;
        set.lockout.max_address_failures = 3;
        set.lockout.lockout = Duration::from_secs(60);
    })
    .await;
    let port = std::net::TcpListener::bind(format!("{BALANCER}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("{BALANCER}:{port}");
    let ngx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&ngx_dir).unwrap();
    let _nginx = start_nginx(
        &ngx_dir,
        &listen,
        &s.addr().to_string(),
        &(chain.clone(), key.clone(), ca_file.clone()),
    );
    let lb = format!("https://{listen}");
    let a = client_from("127.0.13.21", &ca_pem);
    let b = client_from("127.0.13.22", &ca_pem);
    let c = client_from("127.0.13.23", &ca_pem);
    cascade_testkit::wait_until(Duration::from_secs(10), || async {
        c.get(format!("{lb}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
    .unwrap();

    // Enrollment and the check-in's address: the client's.
    let e = enroll(&c, &lb, &s, "behind-nginx").await;
    check_in(&c, &lb, &e.credential).await;
    let v = client_view(&s, &e.client_id).await;
    assert_eq!(v.enrolled_from, "127.0.13.23");
    assert_eq!(v.peer_ip.as_deref(), Some("127.0.13.23"));

    // A guesses, naming B in its own X-Forwarded-For: nginx appends A's address, which counts.
    for i in 0..3 {
        let resp = a
            .get(format!("{lb}/api/policy"))
            .bearer_auth(guess(i))
            .header("x-forwarded-for", "127.0.13.22")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "guess {i}");
    }
    assert_eq!(
        policy_with(&a, &lb, &guess(3)).await,
        (429, Some("60".into()))
    );
    // B is not locked out by A's failures: its own count starts at 0.
    for i in 10..13 {
        assert_eq!(policy_with(&b, &lb, &guess(i)).await.0, 401, "guess {i}");
    }
    assert_eq!(policy_with(&b, &lb, &guess(13)).await.0, 429);
    // C, through the same balancer, is locked out by neither (a token verified within the last
    // minute, like the admin's, is never locked out: docs/operating.md#rate-limits-and-lockout).
    assert_eq!(policy_with(&c, &lb, &guess(20)).await.0, 401);
    assert_eq!(policy_with(&c, &lb, &s.admin).await.0, 200);

    // The refusals are audited at each client's own address.
    let log = s.api().audit().await.unwrap().entries;
    let refused = |source: &str| {
        log.iter()
            .filter(|e| e.path == "/api/policy" && e.status == 429 && e.source == source)
            .count()
    };
    assert_eq!(refused("127.0.13.21"), 1);
    assert_eq!(refused("127.0.13.22"), 1);
    assert!(
        log.iter().all(|e| e.source != BALANCER),
        "the balancer's address in the audit log: {log:?}"
    );
}
