//! Form bodies (`application/x-www-form-urlencoded`, parsed with `url`'s decoder), the
//! revision a form was rendered at, and how a refusal is shown beside its field. Console
//! writes call the same `Store` methods as the admin API, with the same typed bodies.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::de::IntoDeserializer;

use crate::error::ApiError;

/// A parsed form: every `name=value` pair in order (checkbox groups repeat a name).
#[derive(Debug, Default, Clone)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses an urlencoded body.
    pub fn parse(body: &[u8]) -> Form {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, or `""`.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a checkbox `name` was checked.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// Field-level messages to show beside the fields (`""` is the form as a whole).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    /// The message for `field`, or `""`.
    pub fn get(&self, field: &str) -> &str {
        self.0.get(field).map_or("", String::as_str)
    }

    /// Whether there is no message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a message for `field`.
    pub fn set(&mut self, field: &str, message: impl Into<String>) {
        self.0.insert(field.to_owned(), message.into());
    }

    /// Files an API refusal under its field (`form` when it names none the form has).
    pub fn from_api(err: &ApiError, fields: &[&str]) -> FieldErrors {
        let mut out = FieldErrors::default();
        let field = match err {
            ApiError::StaleRevision { .. } => "form",
            _ => err.field().unwrap_or("form"),
        };
        let field = fields
            .iter()
            .find(|f| **f == field)
            .copied()
            .unwrap_or("form");
        out.set(field, refusal(err));
        out
    }
}

/// The message an admin sees for an API refusal.
pub fn refusal(err: &ApiError) -> String {
    match err {
        ApiError::StaleRevision { expected, current } => format!(
            "The policy was changed by someone else since this page was loaded \
             (revision {expected} → {current}). Nothing was saved: reload the page and make \
             your change again."
        ),
        other => other.to_string(),
    }
}

/// Whether the API refused the request (a 4xx: show it on the page) rather than failed.
pub fn is_refusal(err: &ApiError) -> bool {
    err.status().is_client_error()
}

/// The policy revision the form was rendered at (its hidden `revision` field): the
/// expected revision of the write it asks for.
///
/// # Errors
/// 400 when the form carries no revision number.
pub fn expected(form: &Form) -> Result<Option<i64>, ApiError> {
    let text = form.get("revision");
    let rev: i64 = text.parse().map_err(|_| {
        ApiError::bad(
            "console.revision",
            "revision",
            format!("revision: `{text}` is not a policy revision; reload the page"),
        )
    })?;
    Ok(Some(rev))
}

/// A form value that names one of an enum's variants (`standard`, `any`, …), as the API's
/// JSON spells it.
///
/// # Errors
/// 400 naming `field` and the value when it is none of them.
pub fn choice<T: DeserializeOwned>(field: &str, text: &str) -> Result<T, ApiError> {
    T::deserialize(text.into_deserializer()).map_err(|e: serde::de::value::Error| {
        ApiError::bad("request.value", field, format!("{field}: `{text}`: {e}"))
    })
}
