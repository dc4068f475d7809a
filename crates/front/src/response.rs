//! Writing a response head: the status line, headers in the order given, the blank line.

use http::StatusCode;

/// A response head being written, `HTTP/1.1` always.
#[derive(Debug)]
pub struct ResponseHead {
    out: Vec<u8>,
}

impl ResponseHead {
    /// A head with the status line of `status` (its canonical reason phrase, if any).
    pub fn new(status: StatusCode) -> Self {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        ResponseHead { out }
    }

    /// Adds the header `name: value`.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_ref());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Adds `content-length: len`.
    pub fn content_length(&mut self, len: u64) -> &mut Self {
        self.header("content-length", len.to_string())
    }

    /// Adds the `date` header: now, formatted at most once a second per thread.
    pub fn date(&mut self) -> &mut Self {
        use std::cell::RefCell;
        use std::time::{SystemTime, UNIX_EPOCH};
        thread_local! {
            static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
        }
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.out.extend_from_slice(b"date: ");
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs || c.1.is_empty() {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            self.out.extend_from_slice(c.1.as_bytes());
        });
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// The head's bytes, ending in the blank line; a body may be appended to them.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"\r\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_written_in_order() {
        let mut head = ResponseHead::new(StatusCode::PARTIAL_CONTENT);
        head.content_length(4)
            .header("content-range", "bytes 0-3/10")
            .header("etag", b"\"x\"");
        assert_eq!(
            head.finish(),
            b"HTTP/1.1 206 Partial Content\r\ncontent-length: 4\r\n\
              content-range: bytes 0-3/10\r\netag: \"x\"\r\n\r\n"
        );
        let unknown = StatusCode::from_u16(599).unwrap();
        assert_eq!(
            ResponseHead::new(unknown).finish(),
            b"HTTP/1.1 599 \r\n\r\n"
        );
    }

    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut head = ResponseHead::new(StatusCode::OK);
        head.date();
        let bytes = head.finish();
        let text = std::str::from_utf8(&bytes).unwrap();
        let value = text
            .strip_prefix("HTTP/1.1 200 OK\r\ndate: ")
            .and_then(|t| t.strip_suffix("\r\n\r\n"))
            .unwrap();
        let date = httpdate::parse_http_date(value).unwrap();
        let age = std::time::SystemTime::now().duration_since(date).unwrap();
        assert!(age.as_secs() < 60, "{value}");
        // The second head of the same second reuses the same text.
        let mut again = ResponseHead::new(StatusCode::OK);
        again.date();
        assert_eq!(again.finish().len(), bytes.len());
    }
}
