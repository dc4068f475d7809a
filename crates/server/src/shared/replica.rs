//! What each replica runs in the background on a shared repository: catching up with the
//! newest tree versions, following the signals of new ones, and leading the scheduled mirror.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

use super::{Shared, Tree, Writer, REPO_CHANNEL};

/// Materializes both trees now (the site through its publisher, the upstream unless a mirror
/// run of this replica is under way: that run stores what it makes).
pub async fn catch_up(st: &crate::state::AppState, shared: &Shared) {
    if let crate::site::Site::Own(p) = &st.site {
        if let Err(e) = p.sync_shared().await {
            tracing::warn!(error = %e, code = e.code(), "shared repository: site not materialized; retried");
        }
    }
    if let Ok(_one) = st.mirror.running.try_lock() {
        let dest = st.repo_dir.join("upstream");
        if let Err(e) = shared.materialize(Tree::Upstream, &dest).await {
            tracing::warn!(error = %e, code = e.code(), "shared repository: upstream not materialized; retried");
        }
    }
}

/// Keeps this replica's trees at the newest versions until `stop` flips: at each signal on
/// [`REPO_CHANNEL`], and every `poll` as a catch-up (signals sent while the listening
/// connection was down are lost).
pub async fn follow(
    st: crate::state::AppState,
    shared: Shared,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener: Option<PgListener> = None;
    loop {
        catch_up(&st, &shared).await;
        if listener.is_none() {
            match PgListener::connect(&shared.url).await {
                Ok(mut l) => match l.listen(REPO_CHANNEL).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "shared repository: cannot listen; polling");
                    }
                },
                Err(e) => tracing::warn!(error = %e, "shared repository: cannot listen; polling"),
            }
        }
        let heard = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(poll) => {}
            r = heard => if let Err(e) = r {
                tracing::warn!(error = %e, "shared repository: listening failed; reconnecting");
                listener = None;
            },
        }
    }
}

/// Runs the scheduled mirror while this replica is the mirror leader: tries the
/// [`Writer::MirrorLeader`] lock every `retry`; its holder mirrors every `every` for as long
/// as it lives (its death releases the lock and another replica takes over, starting with a
/// run).
pub async fn lead_mirror(
    st: crate::state::AppState,
    shared: Shared,
    every: Duration,
    retry: Duration,
) {
    let mut stop = st.shutdown.subscribe();
    loop {
        match shared
            .lock(Writer::MirrorLeader, Some(Duration::ZERO))
            .await
        {
            Ok(Some(mut lock)) => {
                tracing::info!("mirror leader: this replica runs the scheduled mirror");
                loop {
                    if let Err(e) = crate::mirror::run_once(&st.mirror_job()).await {
                        tracing::warn!(error = %e, "scheduled mirror skipped");
                    }
                    let stopping = tokio::select! {
                        _ = stop.wait_for(|s| *s) => true,
                        () = tokio::time::sleep(every) => false,
                    };
                    if stopping {
                        lock.release().await;
                        return;
                    }
                    if !lock.alive().await {
                        tracing::warn!(
                            "mirror leader: lost the database connection; no longer the leader"
                        );
                        break;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "mirror leader: cannot try the lock"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(retry) => {}
        }
    }
}
