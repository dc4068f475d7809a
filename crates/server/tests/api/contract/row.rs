//! The columns of the contract's table and the helpers its rows are written with.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Which credential an operation takes (its documented security scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    Anyone,
    Admin,
    Enroll,
    Client,
}

impl Who {
    pub(super) fn scheme(self) -> Option<&'static str> {
        match self {
            Who::Anyone => None,
            Who::Admin => Some("admin"),
            Who::Enroll => Some("enrollment"),
            Who::Client => Some("client"),
        }
    }
}

/// What the success answer is.
pub(super) enum Answer {
    /// JSON of a proto type: its schema name and an exact round trip through it.
    Json(String, fn(&Value) -> Result<Value, String>),
    /// Not JSON of a named type (text, the document itself, repository files): the
    /// documented schema's `type`.
    Plain(&'static str),
}

pub(super) struct Row {
    pub(super) method: &'static str,
    /// As documented (`{name}` placeholders).
    pub(super) path: &'static str,
    pub(super) who: Who,
    /// The request body type's schema name and a sample of it.
    pub(super) request: Option<(String, Value)>,
    /// The documented success status and body.
    pub(super) success: u16,
    pub(super) answer: Answer,
    /// The path driven (`CLIENT` stands for the enrolled client's id).
    pub(super) drive: &'static str,
    /// The status the drive expects (the success, unless the set-up cannot reach it).
    pub(super) expect: u16,
}

pub(super) fn name<T: ToSchema>() -> String {
    T::name().into_owned()
}

pub(super) fn exact<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

pub(super) fn answer<T: ToSchema + DeserializeOwned + Serialize>() -> Answer {
    Answer::Json(name::<T>(), exact::<T>)
}

/// The request column of an upload: the body is the file's bytes, not JSON.
pub(super) const RAW: &str = "application/octet-stream";

#[allow(clippy::unnecessary_wraps)] // reads as the `request` column of the table
pub(super) fn raw(sample: &str) -> Option<(String, Value)> {
    Some((RAW.to_owned(), Value::String(sample.to_owned())))
}

#[allow(clippy::unnecessary_wraps)] // reads as the `request` column of the table
pub(super) fn body<T: ToSchema + Serialize>(sample: &T) -> Option<(String, Value)> {
    Some((name::<T>(), serde_json::to_value(sample).unwrap()))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn row(
    method: &'static str,
    path: &'static str,
    who: Who,
    request: Option<(String, Value)>,
    success: u16,
    answer: Answer,
    drive: &'static str,
    expect: u16,
) -> Row {
    Row {
        method,
        path,
        who,
        request,
        success,
        answer,
        drive,
        expect,
    }
}
