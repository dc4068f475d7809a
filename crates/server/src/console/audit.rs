//! The Audit log page (admins only): the same records as `GET /api/audit`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::session::Session;
use super::view::{html, time, Chrome};
use super::ConsoleError;
use crate::state::AppState;

/// One record as shown.
#[derive(Debug, Clone)]
pub struct Row {
    /// When, as text.
    pub time: String,
    /// Who.
    pub actor: String,
    /// From where.
    pub source: String,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The status.
    pub status: u16,
    /// The changed policy parts before (JSON), or `""`.
    pub before: String,
    /// The same parts after, or `""`.
    pub after: String,
}

/// The page.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    /// Navigation and flash.
    pub chrome: Chrome,
    /// The records, newest first.
    pub entries: Vec<Row>,
}

/// `GET /audit`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    let text = |v: Option<serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_default();
    let entries = st
        .store
        .audit(1000)
        .await?
        .into_iter()
        .map(|e| Row {
            time: time(e.at),
            actor: e.actor,
            source: e.source,
            method: e.method,
            path: e.path,
            status: e.status,
            before: text(e.before),
            after: text(e.after),
        })
        .collect();
    let page = AuditPage {
        chrome: Chrome::load(&st, &session, "audit").await,
        entries,
    };
    Ok(html(StatusCode::OK, page.render()?))
}
