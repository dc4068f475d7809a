//! The connections the front serves (a plain TCP stream or a TLS stream over one) and how a
//! file's bytes are written to each: `sendfile(2)` on plain TCP, through user space on TLS.

use std::fs::File;
use std::io;

use futures::StreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

/// A connection the front can serve: a plain TCP stream or a TLS stream over one.
pub(crate) trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Writes the first `len` bytes of `file` to the connection.
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_;

    /// Moves the connection's socket to runtime `to`'s I/O driver, so that it can be served
    /// there ([`crate::accept::Portable`]); other connections cannot move.
    fn rehome(&mut self, to: &tokio::runtime::Handle) -> io::Result<()> {
        let _ = to;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

impl Conn for tokio::net::TcpStream {
    #[cfg(target_os = "linux")]
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        // One `sendfile` call sends at most this much (the kernel's own cap is ~2 GiB).
        const MAX_CALL: usize = 1 << 30;
        async move {
            let pacing = cascade_front::Pacing::unpaced(MAX_CALL);
            Ok(cascade_front::send_file(self, &file, 0, len, pacing).await?)
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        copy_file(self, file, len)
    }
}

impl Conn for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn send_file(
        &mut self,
        file: File,
        len: u64,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        // The bytes must be encrypted in user space (no kTLS: `docs/operating.md#tls-and-zero-copy`).
        copy_file(self, file, len)
    }
}

/// Writes `len` bytes of `file` through user space: 1 MiB reads on the blocking pool straight
/// into the buffers written.
pub(crate) async fn copy_file<W: AsyncWrite + Unpin + Send>(
    io: &mut W,
    file: File,
    len: u64,
) -> io::Result<()> {
    let mut chunks = std::pin::pin!(crate::repo::file_chunks(file, len));
    while let Some(chunk) = chunks.next().await {
        io.write_all(&chunk?).await?;
    }
    Ok(())
}
