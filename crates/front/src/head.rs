//! Reading one request head: bytes are read into the connection's buffer until `httparse`
//! finds a whole head at its start, the head outgrows its limit, or the peer goes away.

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// How large a request head may be and how the buffer grows while it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// A head still incomplete at this many bytes is refused ([`HeadError::TooLarge`]).
    pub max_bytes: usize,
    /// Bytes the buffer grows by when less than half of this is free before a read.
    pub grow: usize,
}

/// Why reading a request head ended without one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// The peer closed the connection (or reading from it failed) before a whole head.
    #[error("front.closed: the connection closed before a whole request head")]
    Closed,
    /// The head is still incomplete at [`HeadLimits::max_bytes`].
    #[error("front.head_too_large: the request head is too large")]
    TooLarge,
    /// More headers than the parser was given room for.
    #[error("front.too_many_headers: the request has too many headers")]
    TooManyHeaders,
    /// Not an HTTP/1.x request head.
    #[error("front.bad_head: not an HTTP/1.x request head")]
    Invalid,
}

/// Reads from `io` (what is already in `buf` first) until `buf` starts with a whole request
/// head of at most `MAX_HEADERS` headers, and returns its length and what `decide` made of it.
/// The head stays in `buf` (with anything after it, a pipelined request): the caller drains
/// it when done with it.
///
/// # Errors
///
/// [`HeadError`]: the peer closed, or the head is too large, has too many headers or is not
/// HTTP/1.x.
pub async fn read_head<const MAX_HEADERS: usize, R, T>(
    io: &mut R,
    buf: &mut Vec<u8>,
    limits: HeadLimits,
    mut decide: impl FnMut(&httparse::Request<'_, '_>) -> T,
) -> Result<(usize, T), HeadError>
where
    R: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => return Ok((n, decide(&req))),
                Ok(httparse::Status::Partial) if buf.len() >= limits.max_bytes => {
                    return Err(HeadError::TooLarge)
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
                Err(_) => return Err(HeadError::Invalid),
            }
        }
        if buf.capacity() - buf.len() < limits.grow / 2 {
            buf.reserve(limits.grow);
        }
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 64,
        grow: 16,
    };

    async fn read<const H: usize>(input: &[u8]) -> (Result<(usize, String), HeadError>, Vec<u8>) {
        let mut io = input;
        let mut buf = Vec::new();
        let r = read_head::<H, _, _>(&mut io, &mut buf, LIMITS, |req| {
            format!("{} {}", req.method.unwrap_or(""), req.path.unwrap_or(""))
        })
        .await;
        (r, buf)
    }

    #[tokio::test]
    async fn a_whole_head_is_decided_and_stays_in_the_buffer() {
        let (r, buf) = read::<4>(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b").await;
        let (n, what) = r.unwrap();
        assert_eq!(what, "GET /a");
        assert_eq!(n, 28);
        // The pipelined request's start is still there.
        assert!(buf.starts_with(b"GET /a"));
    }

    #[tokio::test]
    async fn a_head_read_in_small_pieces_is_put_together() {
        let (mut rx, mut tx) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            for piece in [&b"HEAD /r"[..], b"epo HTTP/1.1\r", b"\n\r\n"] {
                tx.write_all(piece).await.unwrap();
                tx.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            tx
        });
        let mut buf = Vec::new();
        let (n, method) = read_head::<4, _, _>(&mut rx, &mut buf, LIMITS, |req| {
            req.method.map(str::to_owned)
        })
        .await
        .unwrap();
        assert_eq!((n, method.as_deref()), (23, Some("HEAD")));
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn limits_and_bad_heads_are_told_apart() {
        let (r, _) = read::<4>(b"GET /a HTTP/1.1\r\n").await;
        assert_eq!(r, Err(HeadError::Closed));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(80));
        let (r, _) = read::<4>(long.as_bytes()).await;
        assert_eq!(r, Err(HeadError::TooLarge));
        let (r, _) = read::<1>(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n").await;
        assert_eq!(r, Err(HeadError::TooManyHeaders));
        let (r, _) = read::<4>(b"\x16\x03\x01 not http\r\n\r\n").await;
        assert_eq!(r, Err(HeadError::Invalid));
        let (r, _) = read::<4>(b"").await;
        assert_eq!(r, Err(HeadError::Closed));
    }
}
