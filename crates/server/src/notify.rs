//! Notify All Clients. Two broadcast channels: update agents hear a notice first; ordinary
//! clients hear it after `agent_head_start` (at once when no agent is connected), with a
//! jitter hint that grows with the number of connected clients so no source is stormed.
//! Clients not connected pick the change up at their next poll (the policy revision and
//! their own schedule).
//!
//! A stream that (re)connects hears, right after its `hello`, the newest notice issued within
//! the replay window that the client has not acted on: newer than the `Last-Event-ID` it sent
//! and not older than its last check-in ([`missed`]). So a notify issued while the server
//! restarted, or while a client's connection was down, still reaches it
//! (`docs/architecture.md#notify-across-restarts`).
//!
//! Every notify is a row in `notifications`; [`follow`] reads that table so a notify issued
//! on one replica reaches the streams held by every other replica sharing the database: on
//! PostgreSQL when the database signals a new row (`LISTEN`/`NOTIFY`), on SQLite every poll.
//!
//! A rollout's ring notice is for some clients only ([`issue_scoped`]): the row carries them
//! (`scope`), every replica learns them before its streams hear the notice (live, replayed,
//! or relayed from another replica), and a stream delivers it only to those
//! ([`Notifier::reaches`]).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_core::Category;
use cascade_proto::Stage;
pub use cascade_proto::{FanOut, Notice, Role};
use tokio::sync::{broadcast, watch};

use sqlx::postgres::PgListener;

use crate::store::{Store, StoreError, NOTICE_CHANNEL};

/// A notice as the streams receive it: rendered to JSON once, shared by every stream (a
/// fan-out to 10,000 streams would otherwise clone and serialize it 10,000 times).
#[derive(Debug)]
pub struct Rendered {
    /// The notice's id (the event id).
    pub id: i64,
    /// The notice as JSON (the event data).
    pub json: String,
}

impl Rendered {
    fn of(notice: &Notice) -> Arc<Rendered> {
        Arc::new(Rendered {
            id: notice.id,
            // Serializing a struct of integers, strings and enums cannot fail.
            json: serde_json::to_string(notice).unwrap_or_default(),
        })
    }
}

/// The two channels.
#[derive(Debug)]
pub struct Notifier {
    agents: broadcast::Sender<Arc<Rendered>>,
    clients: broadcast::Sender<Arc<Rendered>>,
    head_start: Duration,
    jitter_per_client: Duration,
    max_jitter: Duration,
    poll: Duration,
    /// Ids of clients deleted on this replica: their open streams end at once.
    forgotten: broadcast::Sender<Arc<str>>,
    replay_window: Duration,
    /// The highest notification id looked at, and the ids this replica sent itself.
    seen: tokio::sync::Mutex<Seen>,
    /// The repository served, whose versions every notice carries.
    served: crate::repo::Served,
    /// Which clients the newest notices are for.
    scopes: Mutex<Scopes>,
}

/// Notices whose scope is remembered (the newest ones; an older one is read again when a
/// stream replays it).
const SCOPES_KEPT: usize = 64;

/// Per notice id: the clients it is for (`None`: every client).
#[derive(Debug, Default)]
struct Scopes {
    by_notice: HashMap<i64, Option<Arc<HashSet<String>>>>,
    order: VecDeque<i64>,
}

#[derive(Debug, Default)]
struct Seen {
    polled: i64,
    local: BTreeSet<i64>,
}

impl Notifier {
    /// Channels with the given staging; notices carry the versions `served` announces.
    pub fn new(
        head_start: Duration,
        jitter_per_client: Duration,
        max_jitter: Duration,
        poll: Duration,
        replay_window: Duration,
        served: crate::repo::Served,
    ) -> Self {
        Notifier {
            agents: broadcast::channel(64).0,
            clients: broadcast::channel(64).0,
            head_start,
            jitter_per_client,
            max_jitter,
            poll,
            forgotten: broadcast::channel(64).0,
            replay_window,
            seen: tokio::sync::Mutex::default(),
            served,
            scopes: Mutex::default(),
        }
    }

    /// Whether notice `id` reaches client `client`: every notice does, except those a
    /// rollout issued for some rings, which reach those rings' clients only.
    pub fn reaches(&self, id: i64, client: &str) -> bool {
        self.scopes.lock().map_or(true, |s| {
            s.by_notice
                .get(&id)
                .is_none_or(|only| only.as_ref().is_none_or(|c| c.contains(client)))
        })
    }

    /// Remembers that notice `id` is for `only` (`None`: every client).
    fn remember(&self, id: i64, only: Option<HashSet<String>>) {
        if let Ok(mut s) = self.scopes.lock() {
            if s.by_notice.insert(id, only.map(Arc::new)).is_none() {
                s.order.push_back(id);
            }
            while s.order.len() > SCOPES_KEPT {
                if let Some(old) = s.order.pop_front() {
                    s.by_notice.remove(&old);
                }
            }
        }
    }

    /// Reads whom notice `id` is for from the database unless remembered.
    async fn learn_scope(&self, store: &Store, id: i64) -> Result<(), StoreError> {
        let known = self
            .scopes
            .lock()
            .is_ok_and(|s| s.by_notice.contains_key(&id));
        if !known {
            let only = store.notice_scope(id).await?;
            self.remember(id, only);
        }
        Ok(())
    }

    /// The repository served (whose versions every notice carries).
    pub fn served(&self) -> &crate::repo::Served {
        &self.served
    }

    /// Ends the open streams of client `id` (deleted or its credential revoked).
    pub fn forget_client(&self, id: &str) {
        // No open stream is not an error worth reporting.
        let _ = self.forgotten.send(Arc::from(id));
    }

    /// A receiver of the ids of clients whose streams must end.
    pub fn forgotten(&self) -> broadcast::Receiver<Arc<str>> {
        self.forgotten.subscribe()
    }

    /// A receiver for a new stream.
    pub fn subscribe(&self, role: Role) -> broadcast::Receiver<Arc<Rendered>> {
        match role {
            Role::Agent => self.agents.subscribe(),
            Role::Client => self.clients.subscribe(),
        }
    }

    /// Connected streams of `role`.
    pub fn connected(&self, role: Role) -> usize {
        match role {
            Role::Agent => self.agents.receiver_count(),
            Role::Client => self.clients.receiver_count(),
        }
    }

    /// The jitter hint for `clients` connected clients.
    fn jitter_ms(&self, clients: usize) -> u64 {
        let per = u64::try_from(self.jitter_per_client.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max_jitter.as_millis()).unwrap_or(u64::MAX);
        per.saturating_mul(clients as u64).min(max)
    }

    /// The replay window in whole seconds.
    fn replay_window_s(&self) -> u64 {
        self.replay_window.as_secs()
    }

    /// Sends notice `id`: agents now, clients after the head start.
    pub fn send(&self, id: i64, categories: Vec<Category>, issued_at: i64) -> FanOut {
        let agents = self.agents.receiver_count();
        let clients = self.clients.receiver_count();
        let jitter_ms = self.jitter_ms(clients);
        let delay = if agents == 0 {
            Duration::ZERO
        } else {
            self.head_start
        };
        let notice = Notice {
            id,
            categories,
            stage: Stage::Agents,
            jitter_ms: 0,
            issued_at,
            versions: self.served.announced(),
        };
        // A send with no receiver is not an error worth reporting.
        let _ = self.agents.send(Rendered::of(&notice));
        let to_clients = Rendered::of(&Notice {
            stage: Stage::Clients,
            jitter_ms,
            ..notice
        });
        let tx = self.clients.clone();
        if delay.is_zero() {
            let _ = tx.send(to_clients);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(to_clients);
            });
        }
        FanOut {
            agents,
            clients,
            jitter_ms,
            clients_after_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            replay_window_s: self.replay_window_s(),
        }
    }
}

/// What a (re)connecting stream has missed: the newest notice issued within the replay
/// window before `now`, newer than `last_event` (the `Last-Event-ID` the client sent) and
/// not older than `last_seen` (its last check-in: a client that reported after a notice has
/// acted on it), rendered for `role` (agents: no jitter; clients: the jitter hint for the
/// clients connected now). A notice of the same second as the check-in is replayed: one
/// extra cycle costs less than a missed update.
///
/// # Errors
/// Database errors.
pub async fn missed(
    notifier: &Notifier,
    store: &Store,
    role: Role,
    last_event: Option<i64>,
    last_seen: Option<i64>,
    now: i64,
) -> Result<Option<Arc<Rendered>>, StoreError> {
    let window = i64::try_from(notifier.replay_window_s()).unwrap_or(i64::MAX);
    let since = now
        .saturating_sub(window)
        .max(last_seen.unwrap_or(i64::MIN));
    let Some(n) = store.newest_notice(last_event.unwrap_or(0), since).await? else {
        return Ok(None);
    };
    // The caller asks `reaches` before replaying it (a replica that restarted since the
    // notice was issued reads its scope here). It may come from another replica not followed
    // yet: the revisions are read again before the client's next policy request.
    notifier.learn_scope(store, n.id).await?;
    store.revisions().forget();
    let (stage, jitter_ms) = match role {
        Role::Agent => (Stage::Agents, 0),
        Role::Client => (Stage::Clients, notifier.jitter_ms(notifier.connected(role))),
    };
    Ok(Some(Rendered::of(&Notice {
        id: n.id,
        categories: n.categories,
        stage,
        jitter_ms,
        issued_at: n.issued_at,
        versions: notifier.served.announced(),
    })))
}

/// Records a notify (by `actor`, at `now`) and sends it to this replica's streams; returns
/// its id and whom it reached.
///
/// # Errors
/// Database errors; nothing is sent then.
pub async fn issue(
    notifier: &Notifier,
    store: &Store,
    actor: &str,
    categories: Vec<Category>,
    now: i64,
) -> Result<(i64, FanOut), StoreError> {
    issue_scoped(notifier, store, actor, categories, now, None::<Vec<String>>).await
}

/// [`issue`] for the clients `only` (`None`: every client), recorded with the notice so that
/// every replica's streams deliver it to those clients only (a rollout's ring notice:
/// `crate::rollout`).
///
/// # Errors
/// Database errors; nothing is sent then.
pub async fn issue_scoped(
    notifier: &Notifier,
    store: &Store,
    actor: &str,
    categories: Vec<Category>,
    now: i64,
    only: Option<impl IntoIterator<Item = String>>,
) -> Result<(i64, FanOut), StoreError> {
    let only: Option<Vec<String>> = only.map(|ids| {
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        ids
    });
    let mut seen = notifier.seen.lock().await;
    let count = |role| i64::try_from(notifier.connected(role)).unwrap_or(0);
    let id = store
        .record_notice(
            actor,
            &categories,
            now,
            (count(Role::Agent), count(Role::Client)),
            only.as_deref(),
        )
        .await?;
    seen.local.insert(id);
    notifier.remember(id, only.map(|ids| ids.into_iter().collect()));
    // A client told to update must not get a 304 for a revision another replica moved on
    // (docs/operating.md#policy-revisions-in-memory).
    store.revisions().forget();
    Ok((id, notifier.send(id, categories, now)))
}

/// Starts following the table from its current end (nothing old is replayed).
///
/// # Errors
/// Database errors.
pub async fn start_following(notifier: &Notifier, store: &Store) -> Result<(), StoreError> {
    notifier.seen.lock().await.polled = store.last_notice().await?;
    Ok(())
}

/// Sends notifications that other replicas recorded until `stop` turns true: on PostgreSQL
/// when the database signals one (`listen`), on SQLite by reading the table every `poll`.
pub async fn follow(notifier: Arc<Notifier>, store: Store, stop: watch::Receiver<bool>) {
    match store.postgres_url() {
        Some(url) => listen(&notifier, &store, &url, stop).await,
        None => poll(&notifier, &store, stop).await,
    }
}

/// Reads the table every `poll`.
async fn poll(notifier: &Notifier, store: &Store, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(notifier.poll) => {}
        }
        if let Err(e) = follow_once(notifier, store).await {
            tracing::warn!(error = %e, "reading notifications from other replicas failed");
        }
    }
}

/// `LISTEN`s on [`NOTICE_CHANNEL`] and reads the table at each signal. Signals sent while
/// the connection was down are lost, so the table is read after every (re)connection:
/// polling only catches up.
async fn listen(notifier: &Notifier, store: &Store, url: &str, mut stop: watch::Receiver<bool>) {
    let mut pause = Duration::from_millis(500);
    loop {
        match connect_listener(url).await {
            Ok(mut listener) => {
                pause = Duration::from_millis(500);
                loop {
                    if let Err(e) = follow_once(notifier, store).await {
                        tracing::warn!(error = %e, "reading notifications from other replicas failed");
                    }
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        // `Ok(None)`: the connection dropped and came back; read the table.
                        heard = listener.try_recv() => if let Err(e) = heard {
                            tracing::warn!(error = %e, "listening for notifications failed");
                            break;
                        },
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for notifications; retrying"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn connect_listener(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(NOTICE_CHANNEL).await?;
    Ok(listener)
}

async fn follow_once(notifier: &Notifier, store: &Store) -> Result<(), StoreError> {
    let mut seen = notifier.seen.lock().await;
    for n in store.notices_after(seen.polled).await? {
        let id = n.id;
        seen.polled = seen.polled.max(id);
        if seen.local.remove(&id) {
            continue;
        }
        // Whom it is for, and the revisions the other replica may have changed, before any
        // stream here hears it.
        notifier.learn_scope(store, id).await?;
        store.revisions().forget();
        let fan = notifier.send(id, n.categories, n.issued_at);
        tracing::info!(
            id,
            agents = fan.agents,
            clients = fan.clients,
            "notify from another replica"
        );
    }
    Ok(())
}
