//! One raw HTTP/1.1 event stream per client (no client library: 10,000 of them must stay
//! cheap), from its own source address, over plain TCP or TLS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

/// The `i`-th client's source address: 127.2.0.1 upwards, 250 per /24, 62,500 per /16.
pub(crate) fn source(i: usize) -> IpAddr {
    let b = u8::try_from(2 + i / 62_500).unwrap_or(255);
    let c = u8::try_from(i / 250 % 250).unwrap_or(0);
    let d = u8::try_from(i % 250 + 1).unwrap_or(1);
    IpAddr::V4(Ipv4Addr::new(127, b, c, d))
}

/// A rustls connector trusting only the server's CA.
pub(crate) fn tls_connector(ca_pem: &[u8]) -> Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.context("CA certificate")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A stream's connection: plain TCP or TLS over it.
enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl Io {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(t) => t.write_all(b).await,
            Io::Tls(t) => {
                t.write_all(b).await?;
                t.flush().await
            }
        }
    }

    async fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(t) => t.read(b).await,
            Io::Tls(t) => t.read(b).await,
        }
    }
}

/// One raw HTTP/1.1 event stream (no client library: 10,000 of them must stay cheap).
pub(crate) struct Stream {
    tcp: Io,
    seen: Vec<u8>,
}

impl Stream {
    pub(crate) async fn open(
        from: IpAddr,
        to: SocketAddr,
        credential: &str,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Stream> {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(from, 0))
            .with_context(|| format!("binding {from}"))?;
        let tcp = sock.connect(to).await.context("connecting")?;
        tcp.set_nodelay(true)?;
        let mut tcp = match tls {
            None => Io::Plain(tcp),
            Some(c) => {
                let name = rustls_pki_types::ServerName::IpAddress(to.ip().into());
                Io::Tls(Box::new(
                    c.connect(name, tcp).await.context("TLS handshake")?,
                ))
            }
        };
        let req = format!(
            "GET /api/client/events HTTP/1.1\r\nHost: {to}\r\nAuthorization: Bearer {credential}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await?;
        Ok(Stream {
            tcp,
            seen: Vec::with_capacity(1024),
        })
    }

    /// Reads until `needle` has arrived (SSE events are single chunks, so the chunked
    /// framing never splits a line), then forgets what was read.
    pub(crate) async fn until(&mut self, needle: &[u8]) -> Result<()> {
        let mut buf = [0u8; 2048];
        loop {
            if self.seen.windows(needle.len()).any(|w| w == needle) {
                self.seen.clear();
                return Ok(());
            }
            let n = self.tcp.read(&mut buf).await?;
            if n == 0 {
                bail!(
                    "stream closed before `{}`: {}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&self.seen)
                );
            }
            self.seen.extend_from_slice(&buf[..n]);
        }
    }
}
