//! Sending part of a file to a TCP socket with `sendfile(2)`: the kernel copies from the page
//! cache to the socket, nothing passes through user space. Waits for the socket whenever it
//! is full and, when paced, for the bandwidth each step reserves.

use std::fs::File;
use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// How a file is sent: in steps of at most `step` bytes per `sendfile` call, and, when
/// paced, after waiting as long as `wait(step's bytes)` says before each step.
#[derive(Clone, Copy)]
pub struct Pacing<'a> {
    step: usize,
    wait: Option<&'a (dyn Fn(u64) -> Duration + Sync)>,
}

impl<'a> Pacing<'a> {
    /// As fast as the socket takes it, at most `step` bytes per call.
    pub fn unpaced(step: usize) -> Self {
        Pacing {
            step: step.max(1),
            wait: None,
        }
    }

    /// Steps of `step` bytes, each after the pause `wait` returns for its size (a bandwidth
    /// cap reserving its share).
    pub fn paced(step: usize, wait: &'a (dyn Fn(u64) -> Duration + Sync)) -> Self {
        Pacing {
            step: step.max(1),
            wait: Some(wait),
        }
    }
}

impl std::fmt::Debug for Pacing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacing")
            .field("step", &self.step)
            .field("paced", &self.wait.is_some())
            .finish()
    }
}

/// Why sending a file ended early.
#[derive(Debug, thiserror::Error)]
pub enum SendFileError {
    /// The file ended before the bytes promised (it shrank after its length was taken): the
    /// peer sees a short answer against its `Content-Length`, never other bytes.
    #[error("front.file_shrank: the file is shorter than the length announced")]
    Shrank,
    /// Writing to the socket failed (the peer went away, most likely).
    #[error("front.send: {0}")]
    Io(#[from] io::Error),
}

impl From<SendFileError> for io::Error {
    fn from(e: SendFileError) -> Self {
        match e {
            SendFileError::Shrank => io::Error::new(io::ErrorKind::UnexpectedEof, e),
            SendFileError::Io(e) => e,
        }
    }
}

/// Sends `count` bytes of `file` from `offset` to `stream`.
///
/// # Errors
///
/// [`SendFileError`]: the socket failed or the file ended early.
pub async fn send_file(
    stream: &TcpStream,
    file: &File,
    mut offset: u64,
    mut count: u64,
    pacing: Pacing<'_>,
) -> Result<(), SendFileError> {
    while count > 0 {
        let want = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(pacing.step);
        if let Some(wait) = pacing.wait {
            tokio::time::sleep(wait(want as u64)).await;
        }
        let mut left = want;
        while left > 0 {
            stream.writable().await?;
            let sent = stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, file, Some(&mut offset), left).map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Err(SendFileError::Shrank),
                Ok(n) => {
                    left -= n;
                    count -= n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncReadExt as _;

    /// A connected pair on 127.0.0.1 and a file of `len` numbered bytes.
    async fn setup(len: usize) -> (TcpStream, TcpStream, File, Vec<u8>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let bytes: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        (server, client, file, bytes)
    }

    #[tokio::test]
    async fn a_part_of_a_file_arrives_whole_in_small_steps() {
        let (server, mut client, file, bytes) = setup(300_000).await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        send_file(&server, &file, 1000, 250_000, Pacing::unpaced(4096))
            .await
            .unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap(), &bytes[1000..251_000]);
    }

    #[tokio::test]
    async fn paced_steps_ask_for_their_size() {
        let (server, mut client, file, bytes) = setup(10_000).await;
        let asked = AtomicU64::new(0);
        let steps = AtomicU64::new(0);
        let wait = |n: u64| {
            asked.fetch_add(n, Ordering::Relaxed);
            steps.fetch_add(1, Ordering::Relaxed);
            Duration::ZERO
        };
        send_file(&server, &file, 0, 10_000, Pacing::paced(3000, &wait))
            .await
            .unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, bytes);
        assert_eq!(asked.load(Ordering::Relaxed), 10_000);
        assert_eq!(steps.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error() {
        let (server, _client, file, _) = setup(100).await;
        let e = send_file(&server, &file, 50, 100, Pacing::unpaced(1 << 20))
            .await
            .unwrap_err();
        assert!(matches!(e, SendFileError::Shrank), "{e}");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::UnexpectedEof);
    }
}
