//! The progress bar of `cascade agent --once` and `cascade update-now` on a terminal: one
//! line per step tried, with its source and the bytes it has received, ending in ✓ or ✗ and
//! the reason. Off the terminal (or with `--json`) nothing is drawn.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_agent::update::{Observer, StepEvent};
use cascade_core::report::Outcome;
use indicatif::{ProgressBar, ProgressStyle};

/// The step on screen: its spinner and its live byte count.
type Current = Arc<Mutex<Option<(ProgressBar, Arc<AtomicU64>)>>>;

/// A live display of an update cycle; `observer()` feeds it.
pub struct CycleProgress {
    current: Current,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl CycleProgress {
    /// A display when stderr is a terminal and `enabled`, else `None`.
    pub fn start(enabled: bool) -> Option<Self> {
        if !enabled || !std::io::stderr().is_terminal() {
            return None;
        }
        let current: Current = Arc::default();
        let shared = Arc::clone(&current);
        let ticker = tokio::spawn(async move {
            loop {
                if let Ok(g) = shared.lock() {
                    if let Some((bar, bytes)) = g.as_ref() {
                        bar.set_position(bytes.load(Ordering::Relaxed));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Some(CycleProgress {
            current,
            ticker: Some(ticker),
        })
    }

    /// The observer to hand to the agent.
    pub fn observer(&self) -> Observer {
        let current = Arc::clone(&self.current);
        let style = ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Arc::new(move |ev: &StepEvent<'_>| {
            let Ok(mut g) = current.lock() else { return };
            match ev {
                StepEvent::Trying {
                    category,
                    step,
                    of,
                    source,
                    bytes,
                } => {
                    let bar = ProgressBar::new_spinner().with_style(style.clone());
                    bar.set_message(format!("{category} {step}/{of} {source}"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    *g = Some((bar, Arc::clone(bytes)));
                }
                StepEvent::Done(a) => {
                    if let Some((bar, bytes)) = g.take() {
                        bar.set_position(bytes.load(Ordering::Relaxed));
                        let mark = if matches!(a.outcome, Outcome::Ok | Outcome::UpToDate) {
                            "✓"
                        } else {
                            "✗"
                        };
                        let why = a
                            .reason
                            .as_ref()
                            .map_or("up to date".into(), ToString::to_string);
                        bar.finish_with_message(format!(
                            "{mark} {} {} {}: {why}",
                            a.category.map_or("-", |c| c.as_str()),
                            a.step,
                            a.source
                        ));
                    }
                }
            }
        })
    }
}

impl Drop for CycleProgress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}
