//! `GET /clients`: one page of the clients the filters match, counted and paged in SQL.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::Category;
use cascade_proto::Compliance;

use super::{ClientRow, Filters};
use crate::console::form::FieldErrors;
use crate::console::session::Session;
use crate::console::view::{self, html, Chrome};
use crate::console::ConsoleError;
use crate::error::ApiError;
use crate::routes::admin::{client_view, stale_secs};
use crate::state::AppState;

/// Clients per page of the list.
pub const PER_PAGE: usize = 50;
/// [`PER_PAGE`] for SQL.
const PER_PAGE_SQL: i64 = 50;

/// The clients matching `f`: one page of them (all when `page` is `None`) and how many match.
///
/// Everything runs in SQL: search, state, source, IP range (over the numeric IP key), sort
/// and paging; the compliance filter becomes the (installed versions, failed categories)
/// groups whose clients stand where it asks, from the published versions.
///
/// # Errors
/// Store errors.
pub async fn matching(
    st: &AppState,
    f: &Filters,
    page: Option<usize>,
) -> Result<(Vec<ClientRow>, u64), ApiError> {
    let cur = st.store.current().await?;
    let now = st.clock.now();
    let stale = stale_secs(st);
    let mut q = f.query();
    let view = |r| client_view(r, &cur.policy, now, stale, true);
    let compliance = Compliance::parse(&f.compliance)
        .zip(Category::ALL.into_iter().find(|c| c.as_str() == f.category));
    if let Some((want, category)) = compliance {
        let groups = st.store.installed_groups().await?;
        let catalog = crate::fleet::Catalog::read(&st.repo_dir);
        q.installed = Some(
            catalog
                .groups_at(&groups, category, want)
                .into_iter()
                .map(|g| (g.installed_text.clone(), g.failed_text.clone()))
                .collect(),
        );
    }
    if let Some(p) = page {
        let offset = i64::try_from((p - 1) * PER_PAGE).unwrap_or(i64::MAX);
        let (rows, total) = st
            .store
            .clients_page(&q, now, stale, PER_PAGE_SQL, offset)
            .await?;
        return Ok((
            rows.into_iter()
                .map(|r| ClientRow::from_view(view(r)))
                .collect(),
            total,
        ));
    }
    let all: Vec<ClientRow> = st
        .store
        .clients_matching(&q, now, stale)
        .await?
        .into_iter()
        .map(|r| ClientRow::from_view(view(r)))
        .collect();
    let total = all.len() as u64;
    Ok((all, total))
}

/// A source the filter offers.
#[derive(Debug, Clone)]
pub struct SourceOption {
    /// As reports name it.
    pub value: String,
    /// Selected now.
    pub selected: bool,
}

/// `GET /clients`.
#[derive(Template)]
#[template(path = "clients.html")]
pub struct ClientsPage {
    chrome: Chrome,
    f: Filters,
    errors: FieldErrors,
    total: u64,
    first: u64,
    last: u64,
    pages: usize,
    clients: Vec<ClientRow>,
    categories: Vec<&'static str>,
    sources: Vec<SourceOption>,
    stale_after: String,
    csv: String,
    prev: String,
    next: String,
    now: i64,
}

impl ClientsPage {
    /// A check-in time relative to now (`3 min ago`), `never` when there is none.
    #[allow(clippy::ref_option)] // askama passes template values by reference
    pub fn ago(&self, t: &Option<i64>) -> String {
        t.map_or_else(|| "never".to_owned(), |t| view::ago(t, self.now))
    }
}

/// The sources a client's update may name: `server`, each agent, each URL source.
fn sources(policy: &cascade_core::Policy, selected: &str) -> Vec<SourceOption> {
    let mut out = vec!["server".to_owned()];
    out.extend(policy.agent.iter().map(|a| format!("agent:{}", a.address)));
    for e in &policy.sources {
        let s = e.source.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.into_iter()
        .map(|value| SourceOption {
            selected: value == selected,
            value,
        })
        .collect()
}

/// `GET /clients[?q=&show=&source=&range=&category=&compliance=&sort=&order=&page=]`.
pub async fn list(
    session: Session,
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ConsoleError> {
    let mut errors = FieldErrors::default();
    let f = Filters::parse(q.as_deref().unwrap_or_default(), &mut errors);
    let (clients, total) = matching(&st, &f, Some(f.page)).await?;
    let cur = st.store.current().await?;
    let pages = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .div_ceil(PER_PAGE)
        .max(1);
    let first = ((f.page - 1) * PER_PAGE) as u64 + 1;
    let last = first + clients.len() as u64 - 1;
    let prev = if f.page > 1 {
        format!("/clients{}", f.link(&[("page", &(f.page - 1).to_string())]))
    } else {
        String::new()
    };
    let next = if f.page < pages {
        format!("/clients{}", f.link(&[("page", &(f.page + 1).to_string())]))
    } else {
        String::new()
    };
    let page = ClientsPage {
        chrome: Chrome::load(&st, &session, "clients").await,
        csv: format!("/clients.csv{}", f.link(&[("page", "1")])),
        sources: sources(&cur.policy, &f.source),
        f,
        errors,
        total,
        first,
        last,
        pages,
        clients,
        categories: Category::ALL.iter().map(|c| c.as_str()).collect(),
        stale_after: view::duration(stale_secs(&st)),
        prev,
        next,
        now: st.clock.now(),
    };
    let status = if page.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(html(status, page.render()?))
}
