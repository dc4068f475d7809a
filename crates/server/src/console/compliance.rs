//! The Compliance page (`docs/operating.md#compliance`): per category, the newest version
//! published in the repository the server serves, how many clients have it, are behind,
//! never installed anything of it or failed, each count a link to the clients it counts,
//! and the distribution of installed versions as a chart. The figures come from
//! `crate::fleet::compliance`, as `GET /api/fleet/compliance` and `cascade compliance`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use cascade_proto::CategoryCompliance;

use super::chart::{hbars, Bar};
use super::session::Session;
use super::view::{html, Chrome};
use super::ConsoleError;
use crate::state::AppState;

/// One category as the page shows it.
pub struct Row {
    /// The figures.
    pub c: CategoryCompliance,
    /// The version distribution chart (SVG), `""` when no client reported.
    pub chart: String,
}

impl Row {
    /// The category's name.
    pub fn name(&self) -> &'static str {
        self.c.category.as_str()
    }

    /// The newest versions in words.
    pub fn newest(&self) -> String {
        if self.c.newest.is_empty() {
            "nothing published".to_owned()
        } else {
            self.c.newest.join(", ")
        }
    }
}

/// `GET /compliance`.
#[derive(Template)]
#[template(path = "compliance.html")]
pub struct CompliancePage {
    chrome: Chrome,
    rows: Vec<Row>,
}

/// The distribution chart of one category.
pub fn distribution(c: &CategoryCompliance) -> String {
    let bars: Vec<Bar> = c
        .distribution
        .iter()
        .take(12)
        .map(|v| Bar {
            label: v.version.clone(),
            value: v.clients,
            text: format!(
                "{} client{}{}",
                v.clients,
                if v.clients == 1 { "" } else { "s" },
                if v.newest { " (newest)" } else { "" }
            ),
            good: v.newest,
        })
        .collect();
    hbars(
        &format!("dist-{}", c.category.as_str()),
        &format!(
            "Installed versions of {} by number of clients",
            c.category.as_str()
        ),
        &bars,
    )
}

/// `GET /compliance`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    let r = crate::fleet::compliance(&st).await?;
    let rows = r
        .categories
        .into_iter()
        .map(|c| Row {
            chart: distribution(&c),
            c,
        })
        .collect();
    let page = CompliancePage {
        chrome: Chrome::load(&st, &session, "compliance").await,
        rows,
    };
    Ok(html(StatusCode::OK, page.render()?))
}
