//! The console's fleet health (`docs/operating.md#health`): computed afresh when that is
//! cheap, else the last result is shown while a new one is computed in the background.

use cascade_proto::FleetHealth;

use super::health::health;
use crate::state::AppState;
use crate::store::StoreError;

/// Health for the console's banner: computed afresh when that is cheap (under
/// [`CHEAP`], or fewer than [`BIG`] reports); for a fleet where it is not (100,000 clients),
/// the last result is shown for up
/// to [`REUSE`] and then refreshed in the background while the old one is still shown, so
/// no page waits for it. The API and the CLI always call [`health`].
///
/// # Errors
/// Store errors (only when there is no earlier result to show).
pub async fn health_for_pages(st: &AppState) -> Result<FleetHealth, StoreError> {
    let cache = &st.health_cache;
    let cached = cache
        .last
        .lock()
        .ok()
        .and_then(|c| c.as_ref().map(|c| (c.at, c.cost, c.value.clone())));
    match cached {
        Some((at, cost, value)) if cost >= CHEAP && tallied(&value) >= BIG => {
            if at.elapsed() >= REUSE
                && !cache
                    .refreshing
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Err(e) = refresh(&st).await {
                        tracing::error!(error = %e, "refreshing fleet health");
                    }
                    st.health_cache
                        .refreshing
                        .store(false, std::sync::atomic::Ordering::Release);
                });
            }
            Ok(value)
        }
        _ => refresh(st).await,
    }
}

/// [`health`], kept as the console's last result for [`health_for_pages`].
///
/// # Errors
/// Store errors.
pub async fn refresh(st: &AppState) -> Result<FleetHealth, StoreError> {
    let started = std::time::Instant::now();
    let value = health(st).await?;
    if let Ok(mut last) = st.health_cache.last.lock() {
        *last = Some(Cached {
            at: std::time::Instant::now(),
            cost: started.elapsed(),
            value: value.clone(),
        });
    }
    Ok(value)
}

/// The client reports a health result counts (each client's last attempt at each source).
fn tallied(h: &FleetHealth) -> u64 {
    h.sources.iter().map(|s| s.served + s.failed).sum()
}

/// Health over fewer client reports than this is never reused, however long it took (a
/// small fleet on a busy machine: the next page shows the change at once).
pub const BIG: u64 = 10_000;
/// Health computed faster than this is never reused.
pub const CHEAP: std::time::Duration = std::time::Duration::from_millis(20);
/// How long an expensive health result is shown before it is refreshed.
pub const REUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// The last fleet health the console computed (see [`health_for_pages`]).
#[derive(Default)]
pub struct HealthCache {
    last: std::sync::Mutex<Option<Cached>>,
    refreshing: std::sync::atomic::AtomicBool,
    /// When [`sample_if_due`](super::sample_if_due) last looked at the fleet (clock seconds,
    /// 0: never), recorded or not.
    pub(super) sampled: std::sync::atomic::AtomicI64,
}

struct Cached {
    at: std::time::Instant,
    cost: std::time::Duration,
    value: FleetHealth,
}
