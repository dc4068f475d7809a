//! Running the agent: one cycle (`--once`), a kept [`Session`], and the daemon's loop: a cycle
//! at start, on each notice (after its jitter) and on the schedule, within the update windows,
//! with self-update trials (`docs/operating.md#agent-self-update`) and the relay served.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cascade_core::report::UpdateReport;
use tokio::sync::mpsc;

use super::agent::{jitter, now_unix, Agent};
use super::config::{AgentConfig, AgentError};
use super::events::{listen, Heard};
use crate::selfupdate::{AtStart, Trial};
use crate::settings::Schedule;
use crate::update::Observer;

/// An agent started once and kept, cycle after cycle, as the daemon keeps it ([`run`]): its
/// cycles share its HTTP clients, so they reuse kept-alive connections and resume TLS
/// sessions. For callers that drive cycles themselves (a benchmark modelling a fleet of
/// daemons); it holds the data directory's lock while it lives.
pub struct Session {
    agent: Agent,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.agent.id.client_id)
            .field("servers", &self.agent.servers)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the agent (enrolling it first when it is not yet), as [`run`] does.
    ///
    /// # Errors
    /// Start-up failures (not enrolled, locked).
    pub async fn start(cfg: AgentConfig) -> Result<Session, AgentError> {
        Ok(Session {
            agent: Agent::start(cfg).await?,
        })
    }

    /// One update cycle, as the daemon runs it on a notice or its schedule; the report.
    ///
    /// # Errors
    /// No policy (the server unreachable and none cached).
    pub async fn cycle(&self) -> Result<UpdateReport, AgentError> {
        self.agent.cycle().await
    }
}

/// Runs one cycle and returns its report (`cascade agent --once`, `cascade update-now`).
///
/// # Errors
/// Start-up failures (not enrolled, locked, no policy).
pub async fn once(cfg: AgentConfig) -> Result<UpdateReport, AgentError> {
    once_observed(cfg, None).await
}

/// [`once`], telling `observer` about each step (a progress bar on a terminal).
///
/// # Errors
/// Start-up failures (not enrolled, locked, no policy).
pub async fn once_observed(
    cfg: AgentConfig,
    observer: Option<Observer>,
) -> Result<UpdateReport, AgentError> {
    let mut agent = Agent::start(cfg).await?;
    agent.updater = agent.updater.with_observer(observer);
    agent.cycle().await
}

/// `cascade agent verify`: re-checks every installed file against verified metadata and
/// repairs what is damaged from the plan's sources.
///
/// # Errors
/// Start-up failures (not enrolled, locked, no policy).
pub async fn verify(cfg: AgentConfig) -> Result<crate::verify::Verified, AgentError> {
    let agent = Agent::start(cfg).await?;
    agent.verify().await
}

/// Runs until `shutdown` resolves: a cycle at start, on each notification (after its
/// jitter) and every `interval` (± 10 %). Without `cfg.self_update` it never asks for a
/// restart; with it, use [`run_self_updating`].
///
/// # Errors
/// Start-up failures, or the relay's listener cannot be bound.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    run_self_updating(cfg, shutdown).await.map(|_| ())
}

/// How a daemon run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop.
    Stopped,
    /// Start this binary in place of this process, with
    /// [`SelfUpdate::args`](crate::selfupdate::SelfUpdate::args) (a new build on trial, or back
    /// to the old one), `docs/operating.md#agent-self-update`.
    Exec(PathBuf),
}

/// [`run`], updating the agent itself when `cfg.self_update` is set: the run ends with
/// [`Ended::Exec`] when another build must take over this process (the caller executes it).
///
/// # Errors
/// Start-up failures, or the relay's listener cannot be bound.
pub async fn run_self_updating(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Ended, AgentError> {
    // Holding the data directory's lock, before anything else: the self-update state decides
    // which build runs (`docs/operating.md#agent-self-update`).
    let mut agent = Agent::start(cfg).await?;
    let mut trial: Option<Trial> = None;
    if let Some(su) = agent.cfg.self_update.as_mut() {
        match crate::selfupdate::at_start(&agent.data, su, now_unix())? {
            AtStart::Run => {}
            AtStart::Trial(t) => trial = Some(t),
            AtStart::Exec(binary) => return Ok(Ended::Exec(binary)),
        }
    }
    if crate::selfupdate::fault("exit") {
        return Err(AgentError::Setup("fault injected: exit at start".into()));
    }
    let agent = Arc::new(agent);
    let (tx, mut rx) = mpsc::channel::<Heard>(16);
    let events = tokio::spawn(listen(
        agent.servers.clone(),
        agent.id.credential.clone(),
        tx,
    ));
    let (relay_stop, relay_task) = serve_relay(&agent)?;
    let reports = tokio::spawn(Arc::clone(&agent).report_relay());
    tokio::pin!(shutdown);
    let mut n: i64 = 0;
    let mut next_verify = agent
        .cfg
        .verify_interval
        .map(|_| tokio::time::Instant::now());
    // Set when the interval timer woke the loop: such a cycle waits for the update windows;
    // the first cycle, a notify and a manual run do not.
    let mut scheduled = false;
    let ended = 'cycles: loop {
        if let (Some(due), Some(every)) = (next_verify, agent.cfg.verify_interval) {
            if tokio::time::Instant::now() >= due {
                match agent.verify().await {
                    Ok(v) => tracing::info!(
                        checked = v.checked,
                        damaged = v.damaged.len(),
                        "installed files verified"
                    ),
                    Err(e) => tracing::warn!(error = %e, "verification failed"),
                }
                next_verify = Some(tokio::time::Instant::now() + every);
            }
        }
        let trial_end = trial.as_ref().map(|t| deadline_instant(t.deadline()));
        agent.windowed_cycle(scheduled, trial_end).await;
        scheduled = false;
        if let Some(end) = agent.self_update_step(&mut trial, trial_end) {
            break 'cycles end;
        }
        n += 1;
        // The cycle may have put new settings in force.
        let schedule = Schedule::of(agent.applied().as_ref(), agent.cfg.interval);
        let spread = u64::try_from(schedule.jitter.as_millis()).unwrap_or(u64::MAX);
        let wait = schedule.interval + jitter(&agent.id.client_id, n, spread);
        let next = tokio::time::Instant::now() + wait;
        loop {
            // The trial's end wakes the loop too.
            let trial_wake = trial
                .as_ref()
                .map_or(next, |t| deadline_instant(t.deadline()));
            tokio::select! {
                () = &mut shutdown => break 'cycles Ended::Stopped,
                Some(heard) = rx.recv() => match heard {
                    // The server is back: deliver a check-in that failed meanwhile.
                    Heard::Hello => {
                        agent.send_unsent().await;
                        let end = trial.as_ref().map(|t| deadline_instant(t.deadline()));
                        if let Some(end) = agent.self_update_step(&mut trial, end) {
                            break 'cycles end;
                        }
                    }
                    Heard::Notice(notice) => {
                        agent.hear(notice.versions);
                        let delay = jitter(&agent.id.client_id, notice.id, notice.jitter_ms);
                        tokio::select! {
                            () = &mut shutdown => break 'cycles Ended::Stopped,
                            () = tokio::time::sleep(delay) => {}
                        }
                        break;
                    }
                },
                () = tokio::time::sleep_until(trial_wake), if trial.is_some() => {
                    let end = trial.as_ref().map(|t| deadline_instant(t.deadline()));
                    if let Some(end) = agent.self_update_step(&mut trial, end) {
                        break 'cycles end;
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    scheduled = true;
                    break;
                }
            }
        }
    };
    events.abort();
    reports.abort();
    // Stop accepting, let requests in flight finish, close idle keep-alive connections.
    let _ = relay_stop.send(());
    if let Some(t) = relay_task {
        let _ = t.await;
    }
    Ok(ended)
}

/// Starts serving the relay, when the agent is one: the sender that stops it, and its task.
/// Runs inside the agent's runtime (the listener registers with it).
fn serve_relay(
    agent: &Agent,
) -> Result<
    (
        tokio::sync::oneshot::Sender<()>,
        Option<tokio::task::JoinHandle<()>>,
    ),
    AgentError,
> {
    let (relay_stop, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let task = match (&agent.relay, agent.cfg.relay_listen) {
        (Some(relay), Some(addr)) => {
            let listener = cascade_front::listen(addr)
                .map_err(|e| AgentError::Relay(format!("bind {addr}: {e}")))?;
            let relay = Arc::clone(relay);
            Some(tokio::spawn(relay.serve(listener, async move {
                let _ = relay_stopped.await;
            })))
        }
        _ => None,
    };
    Ok((relay_stop, task))
}

impl Agent {
    /// One update cycle, unless it was `scheduled` by the timer and the domain settings'
    /// update windows are closed now; cut short at the end of a self-update trial.
    async fn windowed_cycle(&self, scheduled: bool, trial_end: Option<tokio::time::Instant>) {
        let schedule = Schedule::of(self.applied().as_ref(), self.cfg.interval);
        if scheduled && !schedule.may_run(now_unix()) {
            tracing::info!(
                "outside the update windows of the domain settings: scheduled cycle skipped"
            );
            return;
        }
        let cycle = self.cycle();
        let done = match trial_end {
            Some(end) => tokio::time::timeout_at(end, cycle).await.ok(),
            None => Some(cycle.await),
        };
        match done {
            Some(Ok(r)) => tracing::info!(outcome = ?r.outcome, "update cycle done"),
            Some(Err(e)) => tracing::warn!(error = %e, "update cycle failed"),
            None => tracing::warn!("the update cycle outlasted the trial of this build"),
        }
    }
}

/// The tokio instant of a unix-seconds deadline (now when it has passed).
fn deadline_instant(unix: i64) -> tokio::time::Instant {
    let left = u64::try_from(unix.saturating_sub(now_unix())).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_secs(left)
}

impl Agent {
    /// After a cycle or a delivered check-in: a trial that checked in is won (committed); a
    /// trial past its end hands back to the old build; outside a trial, a newer installed
    /// build of this agent is started on trial. `Some` ends the run.
    fn self_update_step(
        &self,
        trial: &mut Option<Trial>,
        trial_end: Option<tokio::time::Instant>,
    ) -> Option<Ended> {
        let su = self.cfg.self_update.as_ref()?;
        if let Some(t) = trial.as_ref() {
            if self.checked_in.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = crate::selfupdate::won(&self.data, t) {
                    // The marker says healthy: the next start finishes the commit; a marker
                    // that could not be written leaves the trial to be rolled back.
                    tracing::error!(error = %e, code = e.code(), "self-update commit failed");
                    return Some(Ended::Exec(t.exe.clone()));
                }
                *trial = None;
                return None;
            }
            if trial_end.is_some_and(|end| tokio::time::Instant::now() >= end) {
                tracing::warn!(version = %t.to, "no check-in within the trial; back to the old build");
                return Some(Ended::Exec(t.exe.clone()));
            }
            return None;
        }
        match crate::selfupdate::begin(&self.data, self.updater.installer(), su, now_unix()) {
            Ok(Some(binary)) => Some(Ended::Exec(binary)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "cannot start the new agent build");
                None
            }
        }
    }
}
