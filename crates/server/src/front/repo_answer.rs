//! A whole repository file answered by the front: the head written by hand, the body from
//! the small-file cache or by `sendfile(2)`, counted in [`Metrics::repo_answered`].

use std::io;
use std::time::Instant;

use axum::http::StatusCode;
use cascade_front::ResponseHead;
use tokio::io::AsyncWriteExt as _;

use crate::metrics::Metrics;
use crate::repo::{Whole, WholeBody};

use super::Conn;

/// Bodies up to this size are written in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// Writes one repository answer.
pub(super) async fn answer_repo<I: Conn>(
    io: &mut I,
    answer: Whole,
    head_only: bool,
    close: bool,
    metrics: &Metrics,
    started: Instant,
) -> io::Result<()> {
    let (mut head, status, len) = match &answer {
        Whole::NotModified(etag) => {
            let mut head = ResponseHead::new(StatusCode::NOT_MODIFIED);
            head.header("etag", etag.as_bytes());
            (head, 304, 0)
        }
        Whole::File {
            etag,
            len,
            content_type,
            ..
        } => {
            let mut head = ResponseHead::new(StatusCode::OK);
            head.content_length(*len)
                .header("content-type", content_type.as_bytes())
                .header("accept-ranges", "bytes")
                .header("etag", etag.as_bytes());
            (head, 200, *len)
        }
    };
    if close {
        head.header("connection", "close");
    }
    head.date();
    let mut out = head.finish();
    match answer {
        Whole::File {
            body: WholeBody::Bytes(bytes),
            ..
        } if !head_only => {
            if bytes.len() <= COALESCE {
                out.extend_from_slice(&bytes);
                io.write_all(&out).await?;
            } else {
                io.write_all(&out).await?;
                io.write_all(&bytes).await?;
            }
        }
        Whole::File {
            body: WholeBody::File(file),
            len,
            ..
        } if !head_only => {
            io.write_all(&out).await?;
            io.flush().await?;
            io.send_file(file, len).await?;
        }
        Whole::File { .. } | Whole::NotModified(_) => io.write_all(&out).await?,
    }
    io.flush().await?;
    metrics.repo_answered(head_only, status, len, started);
    Ok(())
}
