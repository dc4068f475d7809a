//! Admin routes over the customized source list (list, add, edit, delete a set, move one
//! place) and the what-if resolution `GET /api/resolve`. Each edit is a `core` list
//! operation applied inside one policy transaction.

use std::collections::BTreeSet;
use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cascade_core::{
    resolve as core_resolve, resolve_for_agent, Category, EntryDoc, EntryId, EntrySource, IpRange,
    Plan, PolicyError,
};
use serde::Deserialize;
use serde_json::json;

use super::{expected_revision, with_revision};
use crate::auth::Admin;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;
use crate::store::{self, Stored};

/// A source-list entry as sent: a range and exactly one of `agent` or `url`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    range: String,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

impl EntryBody {
    /// Parses with error fields named as in the body (`range`, `url`, `agent`).
    fn parse(self) -> Result<(IpRange, EntrySource), PolicyError> {
        let doc = EntryDoc {
            id: None,
            range: self.range,
            agent: self.agent,
            url: self.url,
        };
        doc.parse("entry").map_err(|e| match e {
            PolicyError::Range { field, source } => PolicyError::Range {
                field: top_level(&field),
                source,
            },
            PolicyError::Invalid {
                field,
                value,
                reason,
            } => PolicyError::Invalid {
                field: top_level(&field),
                value,
                reason,
            },
            other => other,
        })
    }
}

fn top_level(field: &str) -> String {
    match field.strip_prefix("entry") {
        Some("") => "agent|url".to_owned(),
        Some(rest) => rest.trim_start_matches('.').to_owned(),
        None => field.to_owned(),
    }
}

fn entry_id(text: &str) -> Result<EntryId, ApiError> {
    text.parse::<u32>().map(EntryId).map_err(|_| {
        ApiError::bad(
            "request.id",
            "id",
            format!("id: `{text}` is not a source-list entry id (a positive integer)"),
        )
    })
}

fn list_body(status: StatusCode, stored: &Stored, extra: serde_json::Value) -> Response {
    let sources: Vec<EntryDoc> = stored
        .policy
        .sources
        .iter()
        .map(EntryDoc::from_entry)
        .collect();
    let mut body = json!({"revision": stored.revision, "sources": sources});
    if let (Some(b), serde_json::Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    with_revision(status, stored.revision, &body)
}

/// `GET /api/sources`: `{revision, sources: [{id, range, agent|url}]}` in order.
pub async fn list(_: Admin, State(st): State<AppState>) -> Result<Response, ApiError> {
    let cur = store::current(&st).await?;
    Ok(list_body(StatusCode::OK, &cur, json!({})))
}

/// `POST /api/sources`: append an entry; returns its id.
pub async fn add(
    Admin(actor): Admin,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EntryBody>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let (range, source) = body.parse()?;
    let mut new_id = None;
    let stored = store::write(&st, expected, &actor, |p| {
        let (list, id) = p.sources.add(range, source);
        new_id = Some(id);
        p.with_sources(list)
    })
    .await?;
    Ok(list_body(
        StatusCode::CREATED,
        &stored,
        json!({"id": new_id}),
    ))
}

/// `PUT /api/sources/{id}`: replace an entry's range and source, keeping its place.
pub async fn edit(
    Admin(actor): Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EntryBody>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let id = entry_id(&id)?;
    let (range, source) = body.parse()?;
    let stored = store::write(&st, expected, &actor, |p| {
        p.with_sources(p.sources.edit(id, range, source)?)
    })
    .await?;
    Ok(list_body(StatusCode::OK, &stored, json!({"id": id})))
}

/// `POST /api/sources/delete` body `{ids: [..]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    ids: Vec<u32>,
}

/// `POST /api/sources/delete`: delete the selected entries (all or nothing).
pub async fn delete_set(
    Admin(actor): Admin,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let ids: BTreeSet<EntryId> = body.ids.into_iter().map(EntryId).collect();
    let stored = store::write(&st, expected, &actor, |p| {
        p.with_sources(p.sources.delete(&ids)?)
    })
    .await?;
    Ok(list_body(StatusCode::OK, &stored, json!({"deleted": ids})))
}

/// Which way to move an entry.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// One place towards the top.
    Up,
    /// One place towards the bottom.
    Down,
}

/// `POST /api/sources/{id}/move` body `{direction}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    direction: Direction,
}

/// `POST /api/sources/{id}/move`: move one place up or down.
pub async fn move_one(
    Admin(actor): Admin,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<MoveBody>,
) -> Result<Response, ApiError> {
    let expected = expected_revision(&headers)?;
    let id = entry_id(&id)?;
    let stored = store::write(&st, expected, &actor, |p| {
        let list = match body.direction {
            Direction::Up => p.sources.move_up(id)?,
            Direction::Down => p.sources.move_down(id)?,
        };
        p.with_sources(list)
    })
    .await?;
    Ok(list_body(StatusCode::OK, &stored, json!({"id": id})))
}

/// `GET /api/resolve` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveQuery {
    ip: Option<String>,
    category: Option<String>,
    domain: Option<String>,
    agent: Option<String>,
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    json!({"category": plan.category, "steps": plan.steps, "skipped": plan.skipped})
}

/// `GET /api/resolve?ip=…[&category=…][&domain=…]` or `?agent=IP:PORT`: the plan(s) a
/// client (or an update agent, for itself) would follow now.
pub async fn resolve(
    _: Admin,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ResolveQuery>,
) -> Result<Response, ApiError> {
    let categories = match q.category.as_deref() {
        None | Some("") => Category::ALL.to_vec(),
        Some(c) => vec![c
            .parse::<Category>()
            .map_err(|e| ApiError::bad("request.category", "category", e.to_string()))?],
    };
    let cur = store::current(&st).await?;
    let plans = if let Some(agent) = q.agent.as_deref() {
        let addr = cascade_core::doc::parse_agent_address("agent", agent)?;
        categories
            .iter()
            .map(|c| resolve_for_agent(&cur.policy, addr, *c).map(|p| plan_json(&p)))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let text = q.ip.ok_or_else(|| {
            ApiError::bad(
                "request.ip",
                "ip",
                "ip: give ?ip=ADDRESS (or ?agent=IP:PORT)",
            )
        })?;
        let ip: IpAddr = text.trim().parse().map_err(|_| {
            ApiError::bad(
                "request.ip",
                "ip",
                format!("ip: `{text}` is not an IP address"),
            )
        })?;
        categories
            .iter()
            .map(|c| plan_json(&core_resolve(&cur.policy, ip, q.domain.as_deref(), *c)))
            .collect()
    };
    Ok(with_revision(
        StatusCode::OK,
        cur.revision,
        &json!({"revision": cur.revision, "plans": plans}),
    ))
}
