//! The Add and Edit pages of one customized-source entry (the console's "Add" page and the
//! page behind each IP-range link): the IP range and a choice of update agent (from the
//! registered agents) or URL. Save calls the API's add or edit handler; a refusal re-shows
//! the form with the message beside the field and everything typed kept.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::{EntryDoc, Policy};
use cascade_proto::SourceBody;

use super::form::{self, FieldErrors, Form};
use super::session::{see_other, Session};
use super::view::{html, Chrome};
use super::ConsoleError;
use crate::error::ApiError;
use crate::routes::sources as api;
use crate::state::AppState;

/// The Add / Edit page of one entry.
#[derive(Template)]
#[template(path = "entry.html")]
pub struct EntryPage {
    chrome: Chrome,
    title: String,
    action: String,
    revision: i64,
    range: String,
    kind: String,
    agent: String,
    url: String,
    agents: Vec<String>,
    errors: FieldErrors,
}

impl EntryPage {
    /// Whether agent `a` is the selected one.
    pub fn is_agent(&self, a: &str) -> bool {
        self.agent == a
    }
}

async fn entry_page(
    st: &AppState,
    session: &Session,
    policy: &Policy,
    revision: i64,
    id: Option<u32>,
    doc: EntryDoc,
    errors: FieldErrors,
) -> EntryPage {
    let kind = if doc.url.is_some() { "url" } else { "agent" };
    EntryPage {
        chrome: Chrome::load(st, session, "sources").await,
        title: id.map_or_else(
            || "Add update source".to_owned(),
            |id| format!("Edit update source {id}"),
        ),
        action: id.map_or_else(|| "/sources/add".to_owned(), |id| format!("/sources/{id}")),
        revision,
        range: doc.range,
        kind: kind.to_owned(),
        agent: doc.agent.unwrap_or_default(),
        url: doc.url.unwrap_or_default(),
        agents: policy.agent.iter().map(|a| a.address.to_string()).collect(),
        errors,
    }
}

/// `GET /sources/add`.
pub async fn add_page(
    session: Session,
    State(st): State<AppState>,
) -> Result<Response, ConsoleError> {
    let cur = st.store.current().await?;
    let doc = EntryDoc {
        id: None,
        range: String::new(),
        agent: None,
        url: None,
    };
    let page = entry_page(
        &st,
        &session,
        &cur.policy,
        cur.revision,
        None,
        doc,
        FieldErrors::default(),
    )
    .await;
    Ok(html(StatusCode::OK, page.render()?))
}

/// `GET /sources/{id}`: the entry's edit page (the IP-range link).
pub async fn edit_page(
    session: Session,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let cur = st.store.current().await?;
    let entry = id
        .parse::<u32>()
        .ok()
        .and_then(|n| cur.policy.sources.get(cascade_core::EntryId(n)))
        .map(|(_, e)| EntryDoc::from_entry(e))
        .ok_or(ApiError::NotFound {
            what: "source-list entry",
            id,
        })?;
    let page = entry_page(
        &st,
        &session,
        &cur.policy,
        cur.revision,
        entry.id,
        entry,
        FieldErrors::default(),
    )
    .await;
    Ok(html(StatusCode::OK, page.render()?))
}

/// The entry as typed: the range and the chosen kind of source.
fn typed_entry(f: &Form) -> EntryDoc {
    let pick = |name: &str| Some(f.get(name).trim().to_owned());
    let (agent, url) = match f.get("kind") {
        "agent" => (pick("agent").filter(|a| !a.is_empty()), None),
        "url" => (None, pick("url")),
        _ => (None, None),
    };
    EntryDoc {
        id: None,
        range: f.get("range").trim().to_owned(),
        agent,
        url,
    }
}

async fn save_entry(
    session: Session,
    st: AppState,
    id: Option<String>,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    let f = session.form(body)?;
    let doc = typed_entry(&f);
    let body = SourceBody {
        range: doc.range,
        agent: doc.agent,
        url: doc.url,
    };
    let result = async {
        let expected = form::expected(&f)?;
        let (range, source) = api::parse_entry(body)?;
        match &id {
            None => {
                let (stored, new_id) = st
                    .store
                    .add_source(expected, &session.actor, range, source)
                    .await?;
                Ok::<_, ApiError>((stored.revision, new_id))
            }
            Some(text) => {
                let n = api::entry_id(text)?;
                let stored = st
                    .store
                    .edit_source(expected, &session.actor, n, range, source)
                    .await?;
                Ok((stored.revision, Some(n)))
            }
        }
    }
    .await;
    match result {
        Ok((revision, n)) => {
            let verb = if id.is_some() { "Saved" } else { "Added" };
            let n = n.map_or_else(|| "null".to_owned(), |n| n.to_string());
            session.flash(
                "ok",
                format!("{verb} entry {n} (policy revision {revision})."),
            );
            Ok(see_other("/sources"))
        }
        Err(e) if form::is_refusal(&e) => {
            let cur = st.store.current().await?;
            let fields = ["range", "agent", "url", "agent|url", "form"];
            let errors = FieldErrors::from_api(&e, &fields);
            // Keep what was typed, including the field of the kind not chosen.
            let kept = EntryDoc {
                id: None,
                range: f.get("range").to_owned(),
                agent: (f.get("kind") != "url").then(|| f.get("agent").to_owned()),
                url: (f.get("kind") == "url").then(|| f.get("url").to_owned()),
            };
            let n = id.as_deref().and_then(|i| i.parse().ok());
            let mut page = entry_page(&st, &session, &cur.policy, 0, n, kept, errors).await;
            page.revision = f.get("revision").parse().unwrap_or(cur.revision);
            if f.get("kind").is_empty() {
                page.kind = String::new();
            }
            f.get("url").clone_into(&mut page.url);
            Ok(html(e.status(), page.render()?))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /sources/add`.
pub async fn add(
    session: Session,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    save_entry(session, st, None, &body).await
}

/// `POST /sources/{id}`.
pub async fn edit(
    session: Session,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    save_entry(session, st, Some(id), &body).await
}
