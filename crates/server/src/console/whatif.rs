//! What-if: type a client IP (and optionally its domain) and see, for each category, the
//! ordered plan that client would follow now, each step with its reason, and what was left
//! out and why. It calls core's `resolve` on the stored policy, like every other caller.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::{resolve, Category, Mode};

use super::form::Form;
use super::session::Session;
use super::view::{html, Chrome};
use super::ConsoleError;
use crate::state::AppState;

/// One category's plan.
#[derive(Debug, Clone)]
pub struct PlanView {
    category: &'static str,
    steps: Vec<(usize, String, String)>,
    skipped: Vec<String>,
}

/// `GET /whatif`.
#[derive(Template)]
#[template(path = "whatif.html")]
pub struct WhatIfPage {
    chrome: Chrome,
    ip: String,
    domain: String,
    ip_error: String,
    domain_note: String,
    mode: &'static str,
    revision: i64,
    plans: Vec<PlanView>,
}

/// `GET /whatif[?ip=…&domain=…]`.
pub async fn page(
    session: Session,
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ConsoleError> {
    let q = Form::parse(q.unwrap_or_default().as_bytes());
    let ip_text = q.get("ip").trim().to_owned();
    let domain = q.get("domain").trim().to_owned();
    let cur = st.store.current().await?;
    let mut page = WhatIfPage {
        chrome: Chrome::load(&st, &session, "whatif").await,
        ip: ip_text.clone(),
        domain: domain.clone(),
        ip_error: String::new(),
        domain_note: String::new(),
        mode: match cur.policy.mode {
            Mode::Standard => "standard",
            Mode::Customized => "customized",
        },
        revision: cur.revision,
        plans: Vec::new(),
    };
    let mut status = StatusCode::OK;
    if ip_text.is_empty() {
        // Nothing asked yet: just the form.
    } else if let Ok(ip) = ip_text.parse::<IpAddr>() {
        {
            let dom = (!domain.is_empty()).then_some(domain.as_str());
            if dom.is_some_and(|d| !cur.policy.domains.contains_key(d)) {
                page.domain_note = format!(
                        "Domain `{domain}` has no privilege overrides in the policy; the default privileges apply."
                    );
            }
            page.plans = Category::ALL
                .iter()
                .map(|c| {
                    let plan = resolve(&cur.policy, ip, dom, *c);
                    PlanView {
                        category: c.as_str(),
                        steps: plan
                            .steps
                            .iter()
                            .enumerate()
                            .map(|(i, s)| (i + 1, s.source.to_string(), s.why.clone()))
                            .collect(),
                        skipped: plan.skipped,
                    }
                })
                .collect();
        }
    } else {
        page.ip_error = format!("ip: `{ip_text}` is not an IP address (e.g. 10.0.0.7 or fd00::7)");
        status = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(html(status, page.render()?))
}
