//! Admin routes over the customized source list (list, add, edit, delete a set, move one
//! place) and the what-if resolution `GET /api/resolve`. Each edit is a `core` list
//! operation applied inside one policy transaction.

use std::collections::BTreeSet;
use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cascade_core::{
    resolve as core_resolve, resolve_for_agent, Category, EntryDoc, EntryId, EntrySource, IpRange,
    PolicyError,
};
use cascade_proto::{
    DeleteSources, MoveSource, PlanView, ResolveQuery, ResolveResponse, SourceBody, SourcesResponse,
};

use super::{expected_revision, Revisioned};
use crate::auth::{Admin, Operator, Viewer};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::openapi::{PolicyRefusals, Refusals, Unprocessable};
use crate::store::{Store, Stored};

/// Parses a source-list entry as sent, with error fields named as in the body (`range`,
/// `url`, `agent`).
pub fn parse_entry(body: SourceBody) -> Result<(IpRange, EntrySource), PolicyError> {
    let doc = EntryDoc {
        id: None,
        range: body.range,
        agent: body.agent,
        url: body.url,
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

fn top_level(field: &str) -> String {
    match field.strip_prefix("entry") {
        Some("") => "agent|url".to_owned(),
        Some(rest) => rest.trim_start_matches('.').to_owned(),
        None => field.to_owned(),
    }
}

/// A source-list entry id from a path segment or form value.
///
/// # Errors
/// 400 naming `id` when it is not a positive integer.
pub fn entry_id(text: &str) -> Result<EntryId, ApiError> {
    text.parse::<u32>().map(EntryId).map_err(|_| {
        ApiError::bad(
            "request.id",
            "id",
            format!("id: `{text}` is not a source-list entry id (a positive integer)"),
        )
    })
}

/// The list after a change, with what the change touched.
pub fn list_body(
    status: StatusCode,
    stored: &Stored,
    id: Option<EntryId>,
    deleted: Option<BTreeSet<EntryId>>,
) -> Revisioned<SourcesResponse> {
    let sources = stored
        .policy
        .sources
        .iter()
        .map(EntryDoc::from_entry)
        .collect();
    Revisioned {
        status,
        revision: stored.revision,
        body: SourcesResponse {
            revision: stored.revision,
            sources,
            id,
            deleted,
        },
    }
}

/// `GET /api/sources`: `{revision, sources: [{id, range, agent|url}]}` in order.
#[utoipa::path(get, path = "/api/sources", tag = "sources",
    summary = "The customized source list in order",
    security(("admin" = [])),
    responses((status = 200, description = "The list", body = SourcesResponse), Refusals))]
pub async fn list(
    _: Viewer,
    State(store): State<Store>,
) -> Result<Revisioned<SourcesResponse>, ApiError> {
    let cur = store.current().await?;
    Ok(list_body(StatusCode::OK, &cur, None, None))
}

/// `POST /api/sources`: append an entry; returns its id.
#[utoipa::path(post, path = "/api/sources", tag = "sources",
    summary = "Append an entry {range, agent|url}; answers with its id",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current")),
    request_body = SourceBody,
    responses((status = 201, description = "The list with the new entry", body = SourcesResponse),
        Refusals, PolicyRefusals))]
pub async fn add(
    Admin(actor): Admin,
    State(store): State<Store>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Revisioned<SourcesResponse>, ApiError> {
    let expected = expected_revision(&headers)?;
    let (range, source) = parse_entry(body)?;
    let (stored, new_id) = store.add_source(expected, &actor, range, source).await?;
    Ok(list_body(StatusCode::CREATED, &stored, new_id, None))
}

/// `PUT /api/sources/{id}`: replace an entry's range and source, keeping its place.
#[utoipa::path(put, path = "/api/sources/{id}", tag = "sources",
    summary = "Edit an entry {range, agent|url} in place",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current"),
        ("id" = u32, Path, description = "The entry's id")),
    request_body = SourceBody,
    responses((status = 200, description = "The list after the edit", body = SourcesResponse),
        Refusals, PolicyRefusals))]
pub async fn edit(
    Admin(actor): Admin,
    State(store): State<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Revisioned<SourcesResponse>, ApiError> {
    let expected = expected_revision(&headers)?;
    let id = entry_id(&id)?;
    let (range, source) = parse_entry(body)?;
    let stored = store
        .edit_source(expected, &actor, id, range, source)
        .await?;
    Ok(list_body(StatusCode::OK, &stored, Some(id), None))
}

/// `POST /api/sources/delete`: delete the selected entries (all or nothing).
#[utoipa::path(post, path = "/api/sources/delete", tag = "sources",
    summary = "Delete a set of entries (all or nothing)",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current")),
    request_body = DeleteSources,
    responses((status = 200, description = "The list after the deletion", body = SourcesResponse),
        Refusals, PolicyRefusals))]
pub async fn delete_set(
    Admin(actor): Admin,
    State(store): State<Store>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DeleteSources>,
) -> Result<Revisioned<SourcesResponse>, ApiError> {
    let expected = expected_revision(&headers)?;
    let ids: BTreeSet<EntryId> = body.ids.into_iter().map(EntryId).collect();
    let stored = store.delete_sources(expected, &actor, &ids).await?;
    Ok(list_body(StatusCode::OK, &stored, None, Some(ids)))
}

/// `POST /api/sources/{id}/move`: move one place up or down.
#[utoipa::path(post, path = "/api/sources/{id}/move", tag = "sources",
    summary = "Move an entry one place up or down",
    security(("admin" = [])),
    params(("If-Match" = Option<String>, Header, description = "The policy revision this change is based on (`\"7\"`); 409 when it is no longer current"),
        ("id" = u32, Path, description = "The entry's id")),
    request_body = MoveSource,
    responses((status = 200, description = "The list after the move", body = SourcesResponse),
        Refusals, PolicyRefusals))]
pub async fn move_one(
    Admin(actor): Admin,
    State(store): State<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<MoveSource>,
) -> Result<Revisioned<SourcesResponse>, ApiError> {
    let expected = expected_revision(&headers)?;
    let id = entry_id(&id)?;
    let stored = store
        .move_source(expected, &actor, id, body.direction)
        .await?;
    Ok(list_body(StatusCode::OK, &stored, Some(id), None))
}

/// `GET /api/resolve?ip=…[&category=…][&domain=…]` or `?agent=IP:PORT`: the plan(s) a
/// client (or an update agent, for itself) would follow now.
#[utoipa::path(get, path = "/api/resolve", tag = "sources",
    summary = "What-if: the plans for ?ip=&category=&domain= or ?agent=IP:PORT",
    security(("admin" = [])),
    params(ResolveQuery),
    responses((status = 200, description = "One plan per category", body = ResolveResponse),
        Refusals, Unprocessable))]
pub async fn resolve(
    _: Operator,
    State(store): State<Store>,
    ApiQuery(q): ApiQuery<ResolveQuery>,
) -> Result<Revisioned<ResolveResponse>, ApiError> {
    let categories = match q.category.as_deref() {
        None | Some("") => Category::ALL.to_vec(),
        Some(c) => vec![c
            .parse::<Category>()
            .map_err(|e| ApiError::bad("request.category", "category", e.to_string()))?],
    };
    let cur = store.current().await?;
    let plans = if let Some(agent) = q.agent.as_deref() {
        let addr = cascade_core::doc::parse_agent_address("agent", agent)?;
        categories
            .iter()
            .map(|c| resolve_for_agent(&cur.policy, addr, *c).map(|p| PlanView::from(&p)))
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
            .map(|c| PlanView::from(&core_resolve(&cur.policy, ip, q.domain.as_deref(), *c)))
            .collect()
    };
    Ok(Revisioned::ok(
        cur.revision,
        ResolveResponse {
            revision: cur.revision,
            plans,
        },
    ))
}
