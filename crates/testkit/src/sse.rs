//! The one reader of the notification stream (`GET /api/client/events`) in tests: it hands
//! out each event (name and JSON data) as the server sent it, keep-alive comments skipped.

use eventsource_stream::Eventsource as _;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use serde_json::Value;

use crate::{kit, KitError};

/// An open notification stream.
pub struct Sse {
    events: BoxStream<'static, Option<(String, Value)>>,
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse").finish_non_exhaustive()
    }
}

impl Sse {
    /// Opens the stream of the server at `base` (`http://ADDR`, with or without a trailing
    /// slash) as the holder of `credential`.
    ///
    /// # Errors
    /// Transport failure, or an answer other than 200.
    pub async fn connect(
        http: &reqwest::Client,
        base: &str,
        credential: &str,
    ) -> Result<Sse, KitError> {
        Self::connect_after(http, base, credential, None).await
    }

    /// [`Sse::connect`], sending `last` as `Last-Event-ID` when given (a reconnection after
    /// that notice).
    ///
    /// # Errors
    /// Transport failure, or an answer other than 200.
    pub async fn connect_after(
        http: &reqwest::Client,
        base: &str,
        credential: &str,
        last: Option<i64>,
    ) -> Result<Sse, KitError> {
        let url = format!("{}/api/client/events", base.trim_end_matches('/'));
        let mut req = http.get(url).bearer_auth(credential);
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.map_err(|e| kit("event stream")(&e))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(kit("event stream")(&format!(
                "answered {}, not 200",
                resp.status()
            )));
        }
        let events = resp
            .bytes_stream()
            .eventsource()
            .map(|ev| {
                let ev = ev.ok()?;
                let data = serde_json::from_str(&ev.data).ok()?;
                Some((ev.event, data))
            })
            .boxed();
        Ok(Sse { events })
    }

    /// The next event: (event name, data JSON). `None` when the stream ends, breaks, or an
    /// event's data is not JSON.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        self.events.next().await.flatten()
    }
}
