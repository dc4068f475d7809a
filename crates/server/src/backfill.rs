//! What the console needs done once for clients stored before a version, done in the
//! background in batches after the server starts answering
//! (`docs/operating.md#filling-in-after-an-upgrade`): the fleet figures of clients that have
//! none (`Store::derive_batch`) and the clients search index (`Store::search_start`,
//! `Store::search_fill`). Each batch is one transaction and marks what it did, so a server
//! killed in the middle goes on where it stopped at its next start and counts nothing twice.
//! Between batches the task pauses (`Settings::backfill_pause`) so check-ins get the database.
//! The console says the figures are still being filled in until they are.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::SearchFill;
use crate::AppState;

/// How far the fleet figures are filled in (shown by the console while they are).
#[derive(Debug, Default)]
pub struct Progress {
    /// Clients without figures when the server started.
    to_derive: AtomicU64,
    /// Clients looked at since.
    derived: AtomicU64,
    /// Still filling in.
    running: AtomicBool,
}

impl Progress {
    /// Starts counting: `to_derive` clients have no figures yet.
    pub fn start(&self, to_derive: u64) {
        self.to_derive.store(to_derive, Ordering::Release);
        self.derived.store(0, Ordering::Release);
        self.running.store(to_derive > 0, Ordering::Release);
    }

    fn add(&self, n: u64) {
        self.derived.fetch_add(n, Ordering::AcqRel);
    }

    fn finish(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// While the figures are being filled in: (clients done, clients in all).
    pub fn filling(&self) -> Option<(u64, u64)> {
        if !self.running.load(Ordering::Acquire) {
            return None;
        }
        let all = self.to_derive.load(Ordering::Acquire);
        Some((self.derived.load(Ordering::Acquire).min(all), all))
    }
}

/// Waits `pause`, or returns `false` when the server shuts down first.
async fn pause(pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        _ = stop.changed() => false,
    }
}

/// Fills in the fleet figures, then the search index, a batch at a time, until done or the
/// server shuts down. A failed batch is logged and tried again after a longer pause.
pub async fn run(st: AppState, batch: u32, every: Duration, mut stop: watch::Receiver<bool>) {
    let retry = every.max(Duration::from_secs(5));
    let batch = batch.max(1);
    loop {
        match st.store.derive_batch(batch).await {
            Ok(n) => {
                st.backfill.add(n);
                if n < u64::from(batch) {
                    break;
                }
                if !pause(every, &mut stop).await {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "filling in the console's fleet figures");
                if !pause(retry, &mut stop).await {
                    return;
                }
            }
        }
    }
    if let Some((done, _)) = st.backfill.filling() {
        tracing::info!(clients = done, "filled in the console's fleet figures");
    }
    st.backfill.finish();
    let mut fill = loop {
        match st.store.search_start().await {
            Ok(f) => break f,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the clients search index could not be made; searches scan every client"
                );
                if !pause(retry.max(Duration::from_secs(300)), &mut stop).await {
                    return;
                }
            }
        }
    };
    while let SearchFill::After(after) = fill {
        if !pause(every, &mut stop).await {
            return;
        }
        match st.store.search_fill(after, batch).await {
            Ok(f) => fill = f,
            Err(e) => {
                tracing::error!(error = %e, "filling in the clients search index");
                if !pause(retry, &mut stop).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The console shows progress only while filling in, never more done than in all.
    #[test]
    fn progress() {
        let p = Progress::default();
        assert_eq!(p.filling(), None);
        p.start(10);
        p.add(4);
        assert_eq!(p.filling(), Some((4, 10)));
        p.add(9);
        assert_eq!(p.filling(), Some((10, 10)));
        p.finish();
        assert_eq!(p.filling(), None);
        p.start(0);
        assert_eq!(p.filling(), None);
    }
}
