//! The audit middleware (`docs/operating.md#audit-log`): every request that may change
//! something (any method but `GET`/`HEAD`/`OPTIONS`, on the admin API and the console, not
//! the client API nor login/logout) is recorded after it is answered, refused or not, with
//! the actor, the source address, the status and, when the policy changed, its changed
//! top-level parts before and after. The credential extractors name the actor through the
//! [`AuditSlot`] this middleware puts in the request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use cascade_core::PolicyDoc;
use serde_json::{Map, Value};

use crate::state::AppState;
use crate::store::{NewAudit, Stored};

/// Where a credential extractor leaves the actor of an audited request.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Option<String>>>);

impl AuditSlot {
    /// Names the actor (`user:<name>`).
    pub fn set(&self, actor: String) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(actor);
        }
    }

    fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

/// Whether the middleware records a request with `method` on `path`.
pub fn audited(method: &Method, path: &str) -> bool {
    !(matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || path.starts_with("/api/client/")
        || path == "/login"
        || path == "/logout")
}

/// The top-level parts of two policies that differ: `(before, after)`.
fn diff(before: &Stored, after: &Stored) -> Option<(Value, Value)> {
    if before.revision == after.revision {
        return None;
    }
    let as_map = |s: &Stored| match serde_json::to_value(PolicyDoc::from_policy(&s.policy)) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let (old, new) = (as_map(before), as_map(after));
    let mut was = Map::new();
    let mut now = Map::new();
    for key in old.keys().chain(new.keys()) {
        let (a, b) = (old.get(key), new.get(key));
        if a != b {
            was.insert(key.clone(), a.cloned().unwrap_or(Value::Null));
            now.insert(key.clone(), b.cloned().unwrap_or(Value::Null));
        }
    }
    Some((Value::Object(was), Value::Object(now)))
}

/// The middleware.
pub async fn record(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if !audited(&method, &path) {
        return next.run(req).await;
    }
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.ip().to_string());
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let before = st.store.current().await.ok();
    let resp = next.run(req).await;
    let status = resp.status();
    let changed = if status.is_client_error() || status.is_server_error() {
        None
    } else {
        match (&before, st.store.current().await.ok()) {
            (Some(b), Some(a)) => diff(b, &a),
            _ => None,
        }
    };
    let text = |v: &Value| serde_json::to_string(v).ok();
    let actor = slot.get().unwrap_or_else(|| "-".to_owned());
    let entry = NewAudit {
        actor: &actor,
        source: &source,
        method: method.as_str(),
        path: &path,
        status: status.as_u16(),
        before: changed.as_ref().and_then(|(b, _)| text(b)),
        after: changed.as_ref().and_then(|(_, a)| text(a)),
    };
    if let Err(e) = st.store.append_audit(&entry).await {
        tracing::error!(error = %e, %actor, %path, "audit record not written");
    }
    resp
}
