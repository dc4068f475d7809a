//! What every page shares: the HTML response helper, the page chrome (navigation, logout
//! form, flash message), time and byte formatting, and the login and error templates.

use askama::Template;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use cascade_proto::{FleetHealth, HealthLevel};

pub use crate::human::{ago, duration, time};

use super::session::{Flash, Session};
use crate::state::AppState;

/// What pages may load: only this server; no framing (clickjacking), no inline scripts.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                   form-action 'self'; base-uri 'none'";

/// An HTML page that is never cached (it shows live state and a CSRF token), with a
/// same-origin-only content security policy.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        ],
        body,
    )
        .into_response()
}

/// Navigation, logout and the flash message, for the base layout.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The session's CSRF token.
    pub csrf: String,
    /// Which navigation entry is current.
    pub active: &'static str,
    /// A one-shot message.
    pub flash: Option<Flash>,
    /// One line per update agent or URL source that is down (the banner on every page).
    pub alerts: Vec<String>,
    /// While the fleet figures of clients from before this version are being filled in
    /// (`crate::backfill`): what to tell the reader.
    pub filling: Option<String>,
}

impl Chrome {
    /// The chrome for a page of `session`; takes its flash message.
    pub fn new(session: &Session, active: &'static str) -> Chrome {
        Chrome {
            csrf: session.csrf.clone(),
            active,
            flash: session.take_flash(),
            alerts: Vec::new(),
            filling: None,
        }
    }

    /// The chrome for a page of `session`, with a banner line for each source that is down
    /// (from the fleet health service, `docs/operating.md#health`). When health cannot be
    /// read the page still renders, saying so.
    pub async fn load(st: &AppState, session: &Session, active: &'static str) -> Chrome {
        let mut chrome = Chrome::new(session, active);
        chrome.filling = filling(st);
        match crate::fleet::health_for_pages(st).await {
            Ok(h) => chrome.alerts = down(&h),
            Err(e) => {
                tracing::error!(error = %e, "fleet health for the console banner");
                chrome.alerts =
                    vec!["the health of update agents and sources could not be read".to_owned()];
            }
        }
        chrome
    }

    /// The chrome for a page of `session` that has just computed the fleet health `h`.
    pub fn with_health(
        st: &AppState,
        session: &Session,
        active: &'static str,
        h: &FleetHealth,
    ) -> Chrome {
        Chrome {
            alerts: down(h),
            filling: filling(st),
            ..Chrome::new(session, active)
        }
    }

    /// `aria-current` for navigation entry `name`.
    pub fn current(&self, name: &str) -> &'static str {
        if self.active == name {
            "page"
        } else {
            "false"
        }
    }
}

/// While the fleet figures of older clients are filled in (`crate::backfill`), what to say.
fn filling(st: &AppState) -> Option<String> {
    st.backfill.filling().map(|(done, all)| {
        format!(
            "The fleet figures of clients from before this version are still being filled \
             in ({done} of {all} clients done): counts, charts and health leave the rest out \
             until then."
        )
    })
}

/// A banner line for each source that is down.
fn down(h: &FleetHealth) -> Vec<String> {
    h.sources
        .iter()
        .filter(|s| s.level == HealthLevel::Down)
        .map(|s| s.summary.clone())
        .collect()
}

/// `GET /login`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Double-submit token.
    pub csrf: String,
    /// Why the last attempt failed.
    pub message: String,
}

/// A request that failed as a whole.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

/// An optional time, or `never`.
pub fn maybe_time(secs: Option<i64>) -> String {
    secs.map_or_else(|| "never".to_owned(), time)
}

/// A byte count for people (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut whole = n;
    let mut tenths = 0;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        tenths = (whole % 1024) * 10 / 1024;
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{whole}.{tenths} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Unix times print as calendar UTC times, including before 1970 and on leap days.
    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(maybe_time(None), "never");
    }

    // Byte counts use binary units with one decimal.
    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
