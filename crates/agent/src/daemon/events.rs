//! The notification stream: held, reconnected with a growing pause, resumed after the last
//! notice heard (`docs/architecture.md#notify-across-restarts`).

use std::time::Duration;

use cascade_client::proto::Notice;
use cascade_client::Event;
use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::servers::Servers;

/// What the notification stream told the agent.
pub(super) enum Heard {
    /// The stream (re)connected: the server is reachable.
    Hello,
    /// A Notify All Clients.
    Notice(Notice),
}

/// Holds the notification stream, reconnecting with a growing pause when it drops. A
/// reconnection sends the id of the last notice heard (`Last-Event-ID`), so the server
/// replays only a newer one it missed (`docs/architecture.md#notify-across-restarts`).
/// With replicas, it is held on the one in use, and moves on when that one is down.
pub(super) async fn listen(servers: Servers, credential: String, tx: mpsc::Sender<Heard>) {
    let mut pause = Duration::from_millis(500);
    let mut last: Option<i64> = None;
    loop {
        let credential = credential.as_str();
        let opened = servers
            .call(|api| async move { api.events_after(credential, last).await })
            .await;
        if let Ok(stream) = opened {
            pause = Duration::from_millis(500);
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let heard = match ev {
                    Event::Hello(_) => Heard::Hello,
                    Event::Notify(n) => {
                        last = Some(last.map_or(n.id, |l| l.max(n.id)));
                        Heard::Notice(n)
                    }
                };
                if tx.send(heard).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}
