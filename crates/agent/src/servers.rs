//! The servers an agent talks to: one URL, or several replicas of one server on one
//! PostgreSQL database (`docs/operating.md#replicas`). Check-in, policy, the notification
//! stream and the `server` step of the plan go to the current server; when it is down (the
//! connection is refused, times out or breaks, or it answers 5xx) the agent moves on to the
//! next one and stays there (a sticky choice) until that one fails in turn. A server that
//! failed is skipped for a backoff that doubles with each failure in a row (1 s up to
//! [`MAX_BACKOFF`]); when every server is in its backoff they are tried anyway, the one whose
//! backoff ends first first. Each move is logged (`server failover`).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cascade_client::{Client, ClientError};
use url::Url;

/// The longest a failed server is skipped.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The first backoff after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Whether a client error says the server is down (so another one should be asked): it
/// could not be reached, the connection broke, or it answered 5xx (a load balancer's 502,
/// 503 or 504 included). A 4xx is the server's answer, the same on every replica.
pub fn is_down(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable(_) => true,
        ClientError::Refused { .. } | ClientError::Protocol(_) => false,
        ClientError::Status { status, .. } => *status >= 500,
    }
}

/// Whether a repository step's failure code says its source is down rather than wrong: the
/// next server is then asked for the same step.
pub fn repo_down(code: &str) -> bool {
    matches!(
        code,
        "source.connect"
            | "source.timeout"
            | "source.too_slow"
            | "source.broken"
            | "source.http_status"
    )
}

/// How one server has fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Health {
    /// Failures in a row.
    failures: u32,
    /// Skipped until then.
    down_until: Option<Instant>,
}

/// The choice among servers, without I/O (the clock is passed in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    current: usize,
    health: Vec<Health>,
}

impl Choice {
    /// A choice among `n` servers, the first current.
    pub fn new(n: usize) -> Choice {
        Choice {
            current: 0,
            health: vec![Health::default(); n.max(1)],
        }
    }

    /// The current server's index.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The order to try the servers in at `now`: the current one and those after it
    /// (wrapping) that are not in their backoff, then those in their backoff, the one whose
    /// backoff ends first first.
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.health.len();
        let ring = (0..n).map(|k| (self.current + k) % n);
        let (up, mut down): (Vec<usize>, Vec<usize>) =
            ring.partition(|&i| self.health[i].down_until.is_none_or(|t| t <= now));
        down.sort_by_key(|&i| self.health[i].down_until);
        up.into_iter().chain(down).collect()
    }

    /// Server `i` answered: it becomes the current one (sticky) and its failures are forgotten.
    /// Returns whether the current server changed.
    pub fn succeeded(&mut self, i: usize) -> bool {
        let Some(h) = self.health.get_mut(i) else {
            return false;
        };
        *h = Health::default();
        let moved = self.current != i;
        self.current = i;
        moved
    }

    /// Server `i` is down at `now`: it is skipped for its backoff (doubling with each failure
    /// in a row). Returns the backoff.
    pub fn failed(&mut self, i: usize, now: Instant) -> Duration {
        let Some(h) = self.health.get_mut(i) else {
            return Duration::ZERO;
        };
        h.failures = h.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (h.failures - 1).min(16))
            .min(MAX_BACKOFF);
        h.down_until = Some(now + backoff);
        backoff
    }
}

struct Entry {
    url: Url,
    api: Client,
}

struct Inner {
    entries: Vec<Entry>,
    choice: Mutex<Choice>,
}

/// The agent's servers, shared by its tasks (cheap to clone).
#[derive(Clone)]
pub struct Servers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers")
            .field("urls", &self.urls())
            .field("current", &self.current())
            .finish()
    }
}

impl Servers {
    /// The servers at `urls` (in order of preference; duplicates dropped), each with its
    /// API client made by `client`.
    ///
    /// # Errors
    /// When a client cannot be built, or `urls` is empty.
    pub fn new(
        urls: &[Url],
        client: impl Fn(&Url) -> Result<Client, ClientError>,
    ) -> Result<Servers, ClientError> {
        let mut entries: Vec<Entry> = Vec::new();
        for url in urls {
            if entries.iter().any(|e| same_server(&e.url, url)) {
                continue;
            }
            entries.push(Entry {
                url: url.clone(),
                api: client(url)?,
            });
        }
        if entries.is_empty() {
            return Err(ClientError::Protocol("no server URL".into()));
        }
        let choice = Mutex::new(Choice::new(entries.len()));
        Ok(Servers {
            inner: Arc::new(Inner { entries, choice }),
        })
    }

    /// Every server's URL, in order of preference.
    pub fn urls(&self) -> Vec<Url> {
        self.inner.entries.iter().map(|e| e.url.clone()).collect()
    }

    /// The current server's URL.
    pub fn current(&self) -> Url {
        let i = self.inner.choice.lock().map_or(0, |c| c.current());
        self.inner.entries[i.min(self.inner.entries.len() - 1)]
            .url
            .clone()
    }

    /// The servers' URLs in the order to try them now.
    pub fn order(&self) -> Vec<Url> {
        self.order_indices()
            .into_iter()
            .map(|i| self.inner.entries[i].url.clone())
            .collect()
    }

    fn order_indices(&self) -> Vec<usize> {
        self.inner
            .choice
            .lock()
            .map_or_else(|_| vec![0], |c| c.order(Instant::now()))
    }

    fn index_of(&self, url: &Url) -> Option<usize> {
        self.inner
            .entries
            .iter()
            .position(|e| same_server(&e.url, url))
    }

    /// `url` answered: it becomes the current server (logged when that is a move).
    pub fn succeeded(&self, url: &Url) {
        let Some(i) = self.index_of(url) else { return };
        let from = self.current();
        let moved = self.inner.choice.lock().is_ok_and(|mut c| c.succeeded(i));
        if moved {
            tracing::warn!(from = %from, to = %url, "server failover: now using {url}");
        }
    }

    /// `url` is down (`why`): skipped for its backoff (logged).
    pub fn failed(&self, url: &Url, why: &str) {
        let Some(i) = self.index_of(url) else { return };
        let backoff = self
            .inner
            .choice
            .lock()
            .map_or(Duration::ZERO, |mut c| c.failed(i, Instant::now()));
        if self.inner.entries.len() > 1 {
            tracing::warn!(server = %url, backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), error = why, "server down; trying the next one");
        }
    }

    /// Runs `call` on the servers in turn until one is not down: its answer (or its error
    /// when it answered with one) comes back; when every server is down, the last error.
    ///
    /// # Errors
    /// The server's error, or the last server's when all are down.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut last = None;
        for i in self.order_indices() {
            let entry = &self.inner.entries[i];
            match call(entry.api.clone()).await {
                Err(e) if is_down(&e) => {
                    self.failed(&entry.url, &e.to_string());
                    last = Some(e);
                }
                other => {
                    self.succeeded(&entry.url);
                    return other;
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Unreachable("no server".into())))
    }
}

/// Whether two URLs name the same server (scheme, host, port and path).
fn same_server(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_server_is_sticky_and_a_failed_one_is_skipped_for_its_backoff() {
        let t0 = Instant::now();
        let mut c = Choice::new(3);
        assert_eq!(c.order(t0), vec![0, 1, 2]);
        assert_eq!(c.failed(0, t0), FIRST_BACKOFF);
        assert_eq!(c.order(t0), vec![1, 2, 0], "0 is skipped, tried last");
        assert!(c.succeeded(1), "a move");
        assert_eq!(c.current(), 1);
        // Server 0 is back after its backoff, but 1 stays current (sticky).
        let later = t0 + Duration::from_secs(2);
        assert_eq!(c.order(later), vec![1, 2, 0]);
        assert!(!c.succeeded(1), "no move");
        // 1 fails: 2 is next, then 0 (up again), 1 last.
        c.failed(1, later);
        assert_eq!(c.order(later), vec![2, 0, 1]);
    }

    #[test]
    fn backoff_doubles_per_failure_in_a_row_up_to_the_cap_and_resets_on_success() {
        let t0 = Instant::now();
        let mut c = Choice::new(2);
        let got: Vec<u64> = (0..9).map(|_| c.failed(0, t0).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        c.succeeded(0);
        assert_eq!(c.failed(0, t0), FIRST_BACKOFF);
    }

    #[test]
    fn with_every_server_down_the_one_back_first_is_tried_first() {
        let t0 = Instant::now();
        let mut c = Choice::new(3);
        c.failed(0, t0);
        c.failed(0, t0); // 2 s
        c.failed(1, t0); // 1 s
        c.failed(2, t0);
        c.failed(2, t0);
        c.failed(2, t0); // 4 s
        assert_eq!(c.order(t0), vec![1, 0, 2]);
        assert_eq!(c.order(t0 + Duration::from_millis(1500)), vec![1, 0, 2]);
        assert_eq!(c.order(t0 + Duration::from_secs(3)), vec![0, 1, 2]);
    }

    #[test]
    fn down_means_unreachable_or_5xx_not_a_refusal() {
        let detail = |code: &str| -> cascade_client::proto::ErrorDetail {
            serde_json::from_value(serde_json::json!({"code": code, "field": null, "message": ""}))
                .unwrap()
        };
        assert!(is_down(&ClientError::Unreachable("refused".into())));
        assert!(is_down(&ClientError::Status {
            status: 502,
            error: detail("proxy")
        }));
        assert!(!is_down(&ClientError::Status {
            status: 404,
            error: detail("x")
        }));
        assert!(!is_down(&ClientError::Refused {
            status: 401,
            error: detail("auth")
        }));
        assert!(repo_down("source.connect") && repo_down("source.broken"));
        assert!(!repo_down("source.not_found") && !repo_down("tuf.signature"));
    }

    // A real listener that answers nothing useful and a closed port: `call` moves past the
    // closed port, keeps the server that answered (sticky), and duplicates count once.
    #[tokio::test]
    async fn call_fails_over_from_a_closed_port_and_sticks() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let app = axum::Router::new().route("/api/health", axum::routing::get(|| async { "{}" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        let urls: Vec<Url> = [closed, open, closed]
            .iter()
            .map(|a| Url::parse(&format!("http://{a}/")).unwrap())
            .collect();
        let servers = Servers::new(&urls, |u| Client::new(u.clone(), None)).unwrap();
        assert_eq!(servers.urls().len(), 2, "the duplicate is dropped");
        let asked = std::sync::Mutex::new(Vec::new());
        let got = servers
            .call(|c| {
                asked.lock().unwrap().push(c.base().clone());
                async { Err::<(), _>(ClientError::Unreachable("down".into())) }
            })
            .await;
        assert!(got.is_err(), "every server down: the last error");
        assert_eq!(asked.lock().unwrap().len(), 2, "each server asked once");
        // The real call: the closed port is down (in its backoff now, tried last anyway).
        let servers = Servers::new(&urls, |u| Client::new(u.clone(), None)).unwrap();
        let answered = servers
            .call(|c| async move {
                let url = c.url("api/health")?;
                reqwest::get(url.clone())
                    .await
                    .map_err(|e| ClientError::Unreachable(e.to_string()))?;
                Ok(url)
            })
            .await
            .unwrap();
        assert_eq!(answered.port(), Some(open.port()));
        assert_eq!(servers.current().port(), Some(open.port()), "sticky");
        assert_eq!(servers.order()[0].port(), Some(open.port()));
    }
}
