//! The fleet's samples over time (clients in all, current, failed), recorded when due, for
//! the console's chart of the fleet converging around each notify.

use super::compliance::Catalog;
use crate::state::AppState;
use crate::store::StoreError;

/// Records a sample of the fleet (clients in all, current in every published category,
/// failed) when one is due at the clock's now: a minute after the last look, or 5 s after it
/// within 5 minutes of a notify (and at once after a notify newer than the last sample), so
/// the chart shows the fleet converging around each notify. Nothing is written for an
/// empty fleet, nor while the figures equal the last sample's and it is under 10 minutes
/// old (the chart's line between two equal samples is flat anyway): an idle server does
/// not write. Returns whether it recorded.
///
/// # Errors
/// Store errors.
pub async fn sample_if_due(st: &AppState) -> Result<bool, StoreError> {
    use std::sync::atomic::Ordering;
    let now = st.clock.now();
    let (last, notice) = st.store.last_sample_and_notice().await?;
    let looked = st.health_cache.sampled.load(Ordering::Acquire);
    let seen = last.map_or(looked, |l| l.at.max(looked));
    let due = if last.is_none() && looked == 0 {
        true
    } else {
        let since = now.saturating_sub(seen);
        since >= 60
            || notice.is_some_and(|n| last.is_none_or(|l| n > l.at) && n > looked && now >= n)
            || (since >= 5 && notice.is_some_and(|n| now.saturating_sub(n) <= 300))
    };
    if !due {
        return Ok(false);
    }
    let groups = st.store.installed_groups().await?;
    let catalog = Catalog::read(&st.repo_dir);
    let [_, failed, _, _] = st
        .store
        .state_counts(now, crate::routes::admin::stale_secs(st))
        .await?;
    let sample = crate::store::FleetSample {
        at: now,
        total: groups.iter().map(|g| g.clients).sum(),
        current: catalog.current_clients(&groups),
        failed,
    };
    let unchanged = last.is_some_and(|l| {
        (l.total, l.current, l.failed) == (sample.total, sample.current, sample.failed)
            && now.saturating_sub(l.at) < 600
    });
    if sample.total == 0 {
        // Looked again at the next tick: the first client's sample is not held back.
        return Ok(false);
    }
    st.health_cache.sampled.store(now, Ordering::Release);
    if unchanged {
        return Ok(false);
    }
    st.store.record_sample(sample).await?;
    Ok(true)
}

/// Samples the fleet every 5 s (see [`sample_if_due`]) until `shutdown` turns true.
pub async fn sampler(st: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = sample_if_due(&st).await {
            tracing::warn!(error = %e, "sampling the fleet");
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
