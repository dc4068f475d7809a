//! Notify All Clients. Two broadcast channels: update agents hear a notice first; ordinary
//! clients hear it after `agent_head_start` (at once when no agent is connected), with a
//! jitter hint that grows with the number of connected clients so no source is stormed.
//! Clients not connected pick the change up at their next poll (the policy revision and
//! their own schedule).

use std::time::Duration;

use cascade_core::Category;
use serde::Serialize;
use tokio::sync::broadcast;

/// One notification as sent on the event stream (`event: notify`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notice {
    /// Notification id (increasing).
    pub id: i64,
    /// What to update; every category when the admin did not narrow it.
    pub categories: Vec<Category>,
    /// `agents` or `clients`: which stage of the fan-out this is.
    pub stage: &'static str,
    /// Start within a random delay in `[0, jitter_ms)`.
    pub jitter_ms: u64,
    /// Unix seconds when the admin asked.
    pub issued_at: i64,
}

/// Who listens on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A registered update agent.
    Agent,
    /// An ordinary client.
    Client,
}

impl Role {
    /// `agent` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Client => "client",
        }
    }
}

/// The two channels.
#[derive(Debug)]
pub struct Notifier {
    agents: broadcast::Sender<Notice>,
    clients: broadcast::Sender<Notice>,
    head_start: Duration,
    jitter_per_client: Duration,
    max_jitter: Duration,
}

/// What a notify reached at once.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FanOut {
    /// Connected agents notified now.
    pub agents: usize,
    /// Connected clients, notified after the head start.
    pub clients: usize,
    /// The jitter hint given to clients.
    pub jitter_ms: u64,
    /// Delay before clients are told.
    pub clients_after_ms: u64,
}

impl Notifier {
    /// Channels with the given staging.
    pub fn new(head_start: Duration, jitter_per_client: Duration, max_jitter: Duration) -> Self {
        Notifier {
            agents: broadcast::channel(64).0,
            clients: broadcast::channel(64).0,
            head_start,
            jitter_per_client,
            max_jitter,
        }
    }

    /// A receiver for a new stream.
    pub fn subscribe(&self, role: Role) -> broadcast::Receiver<Notice> {
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

    /// Sends notice `id`: agents now, clients after the head start.
    pub fn send(&self, id: i64, categories: Vec<Category>, issued_at: i64) -> FanOut {
        let agents = self.agents.receiver_count();
        let clients = self.clients.receiver_count();
        let per = u64::try_from(self.jitter_per_client.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max_jitter.as_millis()).unwrap_or(u64::MAX);
        let jitter_ms = per.saturating_mul(clients as u64).min(max);
        let delay = if agents == 0 {
            Duration::ZERO
        } else {
            self.head_start
        };
        let notice = Notice {
            id,
            categories,
            stage: "agents",
            jitter_ms: 0,
            issued_at,
        };
        // A send with no receiver is not an error worth reporting.
        let _ = self.agents.send(notice.clone());
        let to_clients = Notice {
            stage: "clients",
            jitter_ms,
            ..notice
        };
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
        }
    }
}
