//! `GET /clients.csv`: every client the list's filters match, as CSV safe to open in a
//! spreadsheet.

use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use cascade_core::Category;

use super::{matching, Filters};
use crate::console::form::FieldErrors;
use crate::console::session::Session;
use crate::console::view;
use crate::console::ConsoleError;
use crate::state::AppState;

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
        row.push(csv_field(&c.last_seen.map(view::time).unwrap_or_default()));
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
