//! The Clients pages: every enrolled client with its IP, domain, installed version per
//! category, last check-in, the source that served its last update and its failures, with
//! stale/failed filters; and one client's last update, attempt by attempt. The rows come
//! from the registry through the API's own `client_view`, so states match `GET /api/clients`.

use askama::Template;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cascade_core::report::{Outcome, RelayReport, UpdateReport};
use cascade_core::{Category, IpRange};
use cascade_proto::{ClientState, ClientView, Compliance};

use super::form::{FieldErrors, Form};
use super::session::Session;
use super::view::{bytes, html, maybe_time, Chrome};
use super::ConsoleError;
use crate::error::ApiError;
use crate::routes::admin::{client_view, stale_secs, Registry};
use crate::state::AppState;
use crate::store::{ClientQuery, ClientSort};

/// A client as the console shows it.
#[derive(Debug, Clone)]
pub struct ClientRow {
    /// Client id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Domain or `""`.
    pub domain: String,
    /// The IP it reported (or connected from), or `""`.
    pub ip: String,
    /// Installed version per category, in `Category::ALL` order (`""` when none).
    pub versions: Vec<String>,
    /// Unix seconds of the last check-in.
    pub last_seen: Option<i64>,
    /// `ok`, `failed`, `stale` or `never`.
    pub state: String,
    /// The update-agent address it serves at, when it is a registered agent.
    pub agent: Option<String>,
    /// The last update report, when it sent one.
    pub report: Option<UpdateReport>,
    /// What its relay served, when it is an update agent that reported it.
    pub relay: Option<RelayReport>,
}

impl ClientRow {
    /// The row of a client as the API sees it.
    pub fn from_view(v: ClientView) -> ClientRow {
        let ip = v.reported_ip.or(v.peer_ip).unwrap_or_default();
        ClientRow {
            versions: Category::ALL
                .iter()
                .map(|c| v.installed.get(c).cloned().unwrap_or_default())
                .collect(),
            id: v.id,
            name: v.name,
            domain: v.domain.unwrap_or_default(),
            ip,
            last_seen: v.last_seen,
            state: v.state.as_str().to_owned(),
            agent: if v.is_agent {
                Some(v.agent_address.unwrap_or_default())
            } else {
                None
            },
            report: v.last_update,
            relay: v.relay,
        }
    }

    /// The sources that delivered in the last update (`""` when none did).
    pub fn served_by(&self) -> String {
        let mut out: Vec<&str> = Vec::new();
        for a in self.report.iter().flat_map(|r| &r.attempts) {
            if matches!(a.outcome, Outcome::Ok | Outcome::UpToDate)
                && !out.contains(&a.source.as_str())
            {
                out.push(&a.source);
            }
        }
        out.join(", ")
    }

    /// Failed attempts in the last update.
    pub fn failures(&self) -> usize {
        self.report
            .iter()
            .flat_map(|r| &r.attempts)
            .filter(|a| a.outcome == Outcome::Failed)
            .count()
    }

    /// Why the last update failed: the first failed attempt's reason (`agent.disk_full: …`),
    /// `""` when nothing failed.
    pub fn failure_reason(&self) -> String {
        self.report
            .iter()
            .flat_map(|r| &r.attempts)
            .find(|a| a.outcome == Outcome::Failed)
            .and_then(|a| a.reason.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The last check-in, formatted.
    pub fn seen(&self) -> String {
        maybe_time(self.last_seen)
    }
}

/// Every client, by name.
///
/// # Errors
/// Database errors.
pub async fn load(st: &AppState) -> Result<Vec<ClientRow>, ApiError> {
    let all = Registry::from_ref(st).all(true).await?;
    Ok(all.into_iter().map(ClientRow::from_view).collect())
}

/// Clients per page of the list.
pub const PER_PAGE: usize = 50;
/// [`PER_PAGE`] for SQL.
const PER_PAGE_SQL: i64 = 50;
/// The longest search text and IP range a filter takes (longer ones are refused with a
/// short message, never echoed whole).
const MAX_FILTER: usize = 200;

/// The list's filters, sort and page, as the query string carries them.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Search text.
    pub q: String,
    /// `all`, `ok`, `failed` or `stale` (stale or never seen).
    pub show: String,
    /// A source its last update tried (`agent:…`, `url:…`, `server`), or `""`.
    pub source: String,
    /// An IP range, or `""`.
    pub range: String,
    /// A category for `compliance`, or `""`.
    pub category: String,
    /// A compliance state in `category` (`behind`), or `""`.
    pub compliance: String,
    /// `name`, `ip` or `seen`.
    pub sort: String,
    /// `asc` or `desc`.
    pub order: String,
    /// 1-based page.
    pub page: usize,
}

impl Filters {
    /// Reads the query string; bad values are dropped with a message per field.
    pub fn parse(raw: &str, errors: &mut FieldErrors) -> Filters {
        let q = Form::parse(raw.as_bytes());
        let mut bounded = |name: &str, label: &str| {
            let v = q.get(name).trim();
            if v.chars().count() > MAX_FILTER {
                errors.set(
                    name,
                    format!(
                        "{label}: at most {MAX_FILTER} characters (got {})",
                        v.chars().count()
                    ),
                );
                String::new()
            } else {
                v.to_owned()
            }
        };
        let search = bounded("q", "search");
        let source = bounded("source", "source");
        let range = bounded("range", "IP range");
        if !range.is_empty() && range.parse::<IpRange>().is_err() {
            errors.set(
                "range",
                format!(
                    "IP range: `{}` is not an address, CIDR block or FROM-TO range",
                    cascade_proto::limits::cut(&range)
                ),
            );
        }
        let category = match q.get("category") {
            c if Category::ALL.iter().any(|k| k.as_str() == c) => c.to_owned(),
            _ => String::new(),
        };
        let compliance = match q.get("compliance") {
            c if Compliance::parse(c).is_some() && !category.is_empty() => c.to_owned(),
            _ => String::new(),
        };
        Filters {
            q: search,
            show: match q.get("show") {
                s @ ("ok" | "stale" | "failed") => s.to_owned(),
                _ => "all".to_owned(),
            },
            source,
            range,
            category,
            compliance,
            sort: match q.get("sort") {
                s @ ("ip" | "seen") => s.to_owned(),
                _ => "name".to_owned(),
            },
            order: if q.get("order") == "desc" {
                "desc"
            } else {
                "asc"
            }
            .to_owned(),
            page: q
                .get("page")
                .parse::<usize>()
                .unwrap_or(1)
                .clamp(1, 1_000_000),
        }
    }

    /// The SQL part of the filters.
    fn query(&self) -> ClientQuery {
        ClientQuery {
            search: Some(self.q.clone()).filter(|s| !s.is_empty()),
            states: match self.show.as_str() {
                "ok" => vec![ClientState::Ok],
                "failed" => vec![ClientState::Failed],
                "stale" => vec![ClientState::Stale, ClientState::Never],
                _ => Vec::new(),
            },
            source: Some(self.source.clone()).filter(|s| !s.is_empty()),
            sort: match self.sort.as_str() {
                "ip" => ClientSort::Ip,
                "seen" => ClientSort::LastSeen,
                _ => ClientSort::Name,
            },
            descending: self.order == "desc",
            ip_keys: self.range.parse::<IpRange>().ok().map(|r| {
                (
                    crate::store::ip_key(r.start()),
                    crate::store::ip_key(r.end()),
                )
            }),
            installed: None,
        }
    }

    /// The query string of these filters with `changes` applied (`("page", "2")`), for links.
    pub fn link(&self, changes: &[(&str, &str)]) -> String {
        let page = self.page.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("q", &self.q),
            ("show", &self.show),
            ("source", &self.source),
            ("range", &self.range),
            ("category", &self.category),
            ("compliance", &self.compliance),
            ("sort", &self.sort),
            ("order", &self.order),
            ("page", &page),
        ];
        for (k, v) in changes {
            if let Some(p) = pairs.iter_mut().find(|p| p.0 == *k) {
                p.1 = v;
            }
        }
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            let default = matches!(
                (k, v),
                ("show", "all") | ("sort", "name") | ("order", "asc") | ("page", "1")
            );
            if !v.is_empty() && !default {
                out.append_pair(k, v);
            }
        }
        let q = out.finish();
        if q.is_empty() {
            String::new()
        } else {
            format!("?{q}")
        }
    }

    /// The link that sorts by `column` (the other way round when it is the current sort).
    pub fn sort_link(&self, column: &str) -> String {
        let order = if self.sort == column && self.order == "asc" {
            "desc"
        } else {
            "asc"
        };
        format!(
            "/clients{}",
            self.link(&[("sort", column), ("order", order), ("page", "1")])
        )
    }

    /// The arrow shown after the sorted column's name (`aria-sort` says it to screen
    /// readers), `""` for the others.
    pub fn arrow(&self, column: &str) -> &'static str {
        match self.aria_sort(column) {
            "ascending" => "▲",
            "descending" => "▼",
            _ => "",
        }
    }

    /// `aria-sort` for `column`.
    pub fn aria_sort(&self, column: &str) -> &'static str {
        match (self.sort == column, self.order.as_str()) {
            (false, _) => "none",
            (true, "desc") => "descending",
            (true, _) => "ascending",
        }
    }

    /// Whether any filter is set (not the sort or page).
    pub fn any(&self) -> bool {
        !(self.q.is_empty()
            && self.show == "all"
            && self.source.is_empty()
            && self.range.is_empty()
            && self.compliance.is_empty())
    }
}

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
        t.map_or_else(|| "never".to_owned(), |t| super::view::ago(t, self.now))
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
        stale_after: super::view::duration(stale_secs(&st)),
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

/// One CSV field, quoted when it needs to be; a leading `=`, `+`, `-` or `@` is prefixed with
/// `'` so a spreadsheet does not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `GET /clients.csv[?filters]`: every client the filters match, as CSV.
pub async fn csv(
    _session: Session,
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ConsoleError> {
    let mut errors = FieldErrors::default();
    let f = Filters::parse(q.as_deref().unwrap_or_default(), &mut errors);
    let (clients, _) = matching(&st, &f, None).await?;
    let mut out = String::from("name,id,ip,domain");
    for c in Category::ALL {
        out.push(',');
        out.push_str(c.as_str());
    }
    out.push_str(",last_check_in_utc,state,served_by,failures\r\n");
    for c in &clients {
        let mut row = vec![
            csv_field(&c.name),
            csv_field(&c.id),
            csv_field(&c.ip),
            csv_field(&c.domain),
        ];
        row.extend(c.versions.iter().map(|v| csv_field(v)));
        row.push(csv_field(
            &c.last_seen.map(super::view::time).unwrap_or_default(),
        ));
        row.push(csv_field(&c.state));
        row.push(csv_field(&c.served_by()));
        row.push(c.failures().to_string());
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    Ok((
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"clients.csv\""),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        out,
    )
        .into_response())
}

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
