//! Large whole files sent from the descriptor that was `fstat`ed, in chunks read on the
//! blocking pool straight into the buffers sent.

use std::fs::File;
use std::io::Read as _;

use axum::body::Bytes;

/// Whole large files are streamed by [`file_chunks`] in chunks of this size: each chunk is
/// read straight into the buffer that goes to the socket (`tokio::fs` would read into its
/// own buffer and copy), one blocking-pool trip per MiB.
const WHOLE_CHUNK: u64 = 1024 * 1024;

/// The `len` bytes of `file`, in chunks read on the blocking pool straight into the buffers
/// that are sent. A file that shrinks under us ends the body with an error (the client sees a
/// short answer against its `Content-Length`, never other bytes).
pub(crate) fn file_chunks(
    file: File,
    len: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::try_unfold((file, len), |(file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = left.min(WHOLE_CHUNK);
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
            let mut file = file;
            file.by_ref()
                .take(want)
                .read_to_end(&mut buf)
                .map(|_| (file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            ));
        }
        let left = left - chunk.len() as u64;
        Ok(Some((Bytes::from(chunk), (file, left))))
    })
}
