//! One update cycle over every category: the plan's steps in order until one delivers, each
//! recorded as an attempt, the whole bounded by the cycle's deadline
//! (`docs/operating.md#deadlines`).

use std::time::Instant;

use cascade_core::report::{Attempt, Failure, Outcome, Reason, UpdateReport};
use cascade_core::{Category, Plan, Policy, StepSource};
use cascade_repo::first_success;

use super::{Got, Me, StepEvent, Updater};

/// The sources (by [`Updater::source_key`]) that failed to answer in this cycle.
#[derive(Debug, Default)]
struct Unanswered(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl Unanswered {
    fn has(&self, key: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(key))
    }

    fn add(&self, key: String) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(key);
        }
    }
}

/// How one category's update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CategoryOutcome {
    /// A source delivered and something was installed.
    Installed,
    /// A source delivered and nothing was newer.
    Current,
    /// Every step failed (or there was none): the client quit this category.
    Quit,
}

impl Updater {
    /// Runs one cycle over every category and returns the report.
    ///
    /// The cycle is bounded by [`TransportLimits::cycle_deadline`]: a category still running
    /// then, and those after it, quit with a reason that says so. A source that failed to
    /// answer for one category is only probed (with [`TransportLimits::probe_timeout`]) by the
    /// next ones (`docs/operating.md#deadlines`).
    ///
    /// [`TransportLimits::cycle_deadline`]: cascade_repo::TransportLimits::cycle_deadline
    /// [`TransportLimits::probe_timeout`]: cascade_repo::TransportLimits::probe_timeout
    pub async fn run(&self, policy: &Policy, me: &Me, now_unix: i64) -> UpdateReport {
        let _ = self.installer.clean();
        let mut attempts = Vec::new();
        let mut installed_any = false;
        let mut quit = false;
        let limit = self.transport.limits().cycle_deadline;
        let deadline = tokio::time::Instant::now() + limit;
        let unanswered = Unanswered::default();
        for category in Category::ALL {
            let plan = Self::plan(policy, me, category);
            let mut tried = Vec::new();
            let run = self.run_category(&plan, &mut tried, &unanswered);
            let outcome = if let Ok(outcome) = tokio::time::timeout_at(deadline, run).await {
                outcome
            } else {
                tried.push(Attempt {
                    category: Some(category),
                    step: u32::try_from(plan.steps.len() + 1).unwrap_or(u32::MAX),
                    source: "quit".into(),
                    outcome: Outcome::Quit,
                    reason: Some(Reason::Note(format!(
                        "the update cycle's deadline of {limit:?} passed"
                    ))),
                    bytes: 0,
                    millis: 0,
                });
                CategoryOutcome::Quit
            };
            attempts.append(&mut tried);
            match outcome {
                CategoryOutcome::Installed => installed_any = true,
                CategoryOutcome::Current => {}
                CategoryOutcome::Quit => quit = true,
            }
        }
        let outcome = if quit {
            Outcome::Quit
        } else if installed_any {
            Outcome::Ok
        } else {
            Outcome::UpToDate
        };
        UpdateReport {
            finished_at: Some(now_unix),
            outcome,
            attempts,
        }
    }

    /// Tries the plan's steps in order until one delivers, recording each attempt.
    async fn run_category(
        &self,
        plan: &Plan,
        attempts: &mut Vec<Attempt>,
        unanswered: &Unanswered,
    ) -> CategoryOutcome {
        let category = plan.category;
        let of = plan.steps.len();
        let tried = first_success(plan.steps.iter().enumerate(), |(i, step)| {
            self.attempt(category, &step.source, (i + 1, of), unanswered)
        })
        .await;
        attempts.extend(tried.failed.into_iter().map(|(_, failed)| failed));
        if let Some((got, done)) = tried.success {
            attempts.push(done);
            return match got {
                Got::Installed(_) => CategoryOutcome::Installed,
                Got::Current => CategoryOutcome::Current,
            };
        }
        attempts.push(Attempt {
            category: Some(category),
            step: u32::try_from(of + 1).unwrap_or(u32::MAX),
            source: "quit".into(),
            outcome: Outcome::Quit,
            reason: Some(Reason::Note(if plan.steps.is_empty() {
                "the plan has no source for this client".into()
            } else {
                "every source failed".into()
            })),
            bytes: 0,
            millis: 0,
        });
        CategoryOutcome::Quit
    }

    /// Step `n` of `of`, recorded as an [`Attempt`] (and shown to the observer): `Ok` with
    /// what it did when it delivered verified metadata, `Err` when it failed.
    async fn attempt(
        &self,
        category: Category,
        source: &StepSource,
        (n, of): (usize, usize),
        unanswered: &Unanswered,
    ) -> Result<(Got, Attempt), Attempt> {
        let started = Instant::now();
        let key = self.source_key(source);
        let probe = unanswered.has(&key);
        let (result, bytes) = self.try_on_servers(source, category, (n, of), probe).await;
        if let Err(e) = &result {
            if matches!(
                e.code(),
                "source.timeout" | "source.connect" | "source.too_slow"
            ) {
                unanswered.add(key);
            }
        }
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (outcome, reason) = match &result {
            Ok(Got::Installed(what)) => (
                Outcome::Ok,
                Some(Reason::Note(format!("installed {}", what.join(", ")))),
            ),
            Ok(Got::Current) => (Outcome::UpToDate, None),
            Err(e) => (
                Outcome::Failed,
                Some(Reason::Failure(Failure {
                    code: e.code().to_owned(),
                    message: e.to_string(),
                })),
            ),
        };
        let attempt = Attempt {
            category: Some(category),
            step: u32::try_from(n).unwrap_or(u32::MAX),
            source: source.to_string(),
            outcome,
            reason,
            bytes,
            millis,
        };
        if let Some(obs) = &self.observer {
            obs(&StepEvent::Done(&attempt));
        }
        match result {
            Ok(got) => Ok((got, attempt)),
            Err(_) => Err(attempt),
        }
    }
}
