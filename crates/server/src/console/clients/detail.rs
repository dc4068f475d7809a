//! `GET /clients/{id}`: one client and its last update, attempt by attempt.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::report::Outcome;
use cascade_core::Category;

use super::{load, ClientRow};
use crate::console::session::Session;
use crate::console::view::{bytes, html, maybe_time, Chrome};
use crate::console::ConsoleError;
use crate::error::ApiError;
use crate::state::AppState;

/// One attempt, formatted.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    step: u32,
    category: String,
    source: String,
    outcome: String,
    reason: String,
    bytes: String,
    millis: u64,
}

/// `GET /clients/{id}`.
#[derive(Template)]
#[template(path = "client.html")]
pub struct ClientPage {
    chrome: Chrome,
    client: ClientRow,
    versions: Vec<(&'static str, String)>,
    finished: String,
    outcome: String,
    attempts: Vec<AttemptRow>,
}

/// An outcome as the report writes it (`up-to-date`).
pub fn outcome_text(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `GET /clients/{id}`: the client and its last update, step by step.
pub async fn detail(
    session: Session,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let client = load(&st)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(ApiError::NotFound { what: "client", id })?;
    let attempts = client
        .report
        .iter()
        .flat_map(|r| &r.attempts)
        .map(|a| AttemptRow {
            step: a.step,
            category: a
                .category
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            source: a.source.clone(),
            outcome: outcome_text(a.outcome),
            reason: a
                .reason
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            bytes: bytes(a.bytes),
            millis: a.millis,
        })
        .collect();
    let page = ClientPage {
        chrome: Chrome::load(&st, &session, "clients").await,
        finished: maybe_time(client.report.as_ref().and_then(|r| r.finished_at)),
        outcome: client
            .report
            .as_ref()
            .map(|r| outcome_text(r.outcome))
            .unwrap_or_default(),
        versions: Category::ALL
            .iter()
            .map(|c| c.as_str())
            .zip(client.versions.iter().cloned())
            .collect(),
        client,
        attempts,
    };
    Ok(html(StatusCode::OK, page.render()?))
}
