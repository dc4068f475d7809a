//! HTTPS (`docs/operating.md#tls`), with real sockets: the server's port speaks only TLS
//! (a plain-HTTP request or a client that does not trust the server's CA gets nothing),
//! rustls trusting the server's CA gets answers; the CA is served at `/ca.pem` and its hash
//! is in the enrollment token; plain HTTP only when asked for by name.

use std::time::Duration;

use cascade_client::proto::EnrollmentTokenText;
use cascade_server::TlsMode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{start, start_tuned};

/// Everything the peer sends until it closes (or 10 s pass).
async fn read_all(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    got
}

/// Asks `/healthz` on `stream` (closing after it) and checks the answer is a 200.
async fn healthz_answers(stream: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin)) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(stream).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

// What `openssl s_client` found ("wrong version number": plain HTTP) is turned around: a
// plain-HTTP request to the server's port gets no HTTP answer, a TLS client that does not
// trust the server's CA fails its handshake, and rustls trusting the CA gets 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_to_the_servers_ca_gets_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    assert!(s.url.starts_with("https://"), "{}", s.url);

    // Plain HTTP on the raw socket: no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut plain).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "plain HTTP got an HTTP answer: {}",
        String::from_utf8_lossy(&answer)
    );

    // An HTTP client over plain HTTP fails.
    let http_url = s.url.replacen("https://", "http://", 1);
    let err = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{http_url}/healthz"))
        .send()
        .await;
    assert!(err.is_err(), "plain HTTP answered: {err:?}");

    // TLS with the system's roots only (not this server's CA): the handshake fails.
    let untrusting = cascade_client::http_builder(None).unwrap().build().unwrap();
    let err = untrusting.get(format!("{}/healthz", s.url)).send().await;
    assert!(err.is_err(), "a client not trusting the CA was answered");

    // rustls trusting the CA, on the raw socket: 200.
    let mut tls = s.raw_connect().await;
    healthz_answers(&mut tls).await;
    // And the typed client trusting the CA.
    s.client.health().await.unwrap();
}

// The private CA is made on first start (key 0600) and served at `/ca.pem`; the first-start
// enrollment token carries its SHA-256; a restart keeps the CA (enrolled agents keep
// trusting the server) and issues a certificate that chains to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_is_served_and_named_in_the_enrollment_token() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let on_disk = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let mode = std::fs::metadata(dir.path().join("tls/ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "CA key mode {mode:o}");
    let served = s
        .http
        .get(format!("{}/ca.pem", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let served = served.bytes().await.unwrap();
    assert_eq!(served.as_ref(), on_disk.as_slice());

    let token: EnrollmentTokenText = s.enroll.parse().unwrap();
    assert_eq!(
        token.ca_sha256.unwrap().to_hex(),
        cascade_repo::fsutil::sha256_hex(&on_disk)
    );
    // The full token enrolls (its secret part authenticates).
    s.client
        .enroll(
            &s.enroll,
            &cascade_client::proto::EnrollRequest {
                name: "pc".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let previous = (s.admin.clone(), s.enroll.clone(), s.clock.clone());
    let ca = s.ca_pem.clone();
    drop(s);
    let again = crate::harness::start_with(dir.path(), None, Some(previous)).await;
    assert_eq!(again.ca_pem, ca, "a restart keeps the CA");
    again.client.health().await.unwrap();
}

// Plain HTTP only when asked for by name: no CA, `/ca.pem` is 404, and the enrollment token
// says so (`-` for the CA hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.tls = TlsMode::InsecurePlainHttp;
    })
    .await;
    assert!(s.url.starts_with("http://"), "{}", s.url);
    assert!(s.ca_pem.is_none());
    let resp = s
        .http
        .get(format!("{}/ca.pem", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let token: EnrollmentTokenText = s.enroll.parse().unwrap();
    assert_eq!(token.ca_sha256, None);
    assert!(!dir.path().join("tls/ca.key").exists());
}

// An organisation's own certificate and key (`--tls-cert/--tls-key`): the server presents
// them, and serves the chain's last certificate (its CA) at `/ca.pem`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisations_own_certificate_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let own = tempfile::tempdir().unwrap();
    // The organisation's CA and a server certificate it signed, made here with rcgen.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Example Org CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cert = own.path().join("server.pem");
    let key = own.path().join("server.key");
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();

    let s = start_tuned(dir.path(), None, None, |st| {
        st.tls = TlsMode::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
    })
    .await;
    assert_eq!(s.ca_pem.as_deref(), Some(ca_cert.pem().as_bytes()));
    // A client trusting only the organisation's CA is answered.
    let http = cascade_client::http_builder(Some(ca_cert.pem().as_bytes()))
        .unwrap()
        .build()
        .unwrap();
    let resp = http.get(format!("{}/ca.pem", s.url)).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), ca_cert.pem());
    assert!(
        !dir.path().join("tls/ca.key").exists(),
        "no private CA made"
    );
}

/// Connects with `config` (its session store keeps the server's tickets), asks `/healthz`
/// and reads the answer to the end (the tickets arrive after the handshake); how the
/// handshake went.
async fn handshake_with(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> rustls::HandshakeKind {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    healthz_answers(&mut tls).await;
    kind
}

// A client that connects again resumes its TLS session from the server's session ticket
// (`docs/operating.md#tls-session-resumption`), even after more other clients than a
// server-side session cache holds (rustls' default keeps 256) connected in between: the
// tickets are stateless. The server counts full and resumed handshakes in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_its_tls_session_after_many_others() {
    use rustls::HandshakeKind::{Full, Resumed};
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let ca = s.ca_pem.clone().unwrap();
    let first = crate::harness::rustls_client(&ca);
    assert_eq!(handshake_with(s.addr(), first.clone()).await, Full);
    for _ in 0..300 {
        let other = crate::harness::rustls_client(&ca);
        assert_eq!(handshake_with(s.addr(), other).await, Full);
    }
    assert_eq!(handshake_with(s.addr(), first.clone()).await, Resumed);
    // Again: each resumption brings a new ticket.
    assert_eq!(handshake_with(s.addr(), first).await, Resumed);

    let text = s.client.metrics().await.unwrap();
    let count = |kind: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("cascade_tls_handshakes_total{{kind=\"{kind}\"}} "))
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    assert!(count("full") >= 301, "{text}");
    assert!(count("resumed") >= 2, "{text}");
}
