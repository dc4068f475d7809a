//! Form bodies (`application/x-www-form-urlencoded`, parsed with `url`'s decoder), the
//! revision a form was rendered at, and how a refusal is shown beside its field. Console
//! writes call the same `Store` methods as the admin API, with the same typed bodies.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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
        other => plain(&other.to_string()),
    }
}

/// An API message in the console's words: list positions count from 1 as the list does
/// (`sources[5].url` → `entry 6, URL`), and policy-file syntax is named as the page that
/// does the same (`[[agent]]` → the Update agents page). Messages are cut to 300 characters
/// so a long value is never echoed whole.
pub fn plain(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("sources[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 8..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if let (Ok(i), Some(tail)) = (
            digits.parse::<usize>(),
            after[digits.len()..].strip_prefix(']'),
        ) {
            {
                let _ = write!(out, "entry {}", i + 1);
                let (field, tail) = match tail {
                    t if t.starts_with(".url") => (", URL", &t[4..]),
                    t if t.starts_with(".agent") => (", update agent", &t[6..]),
                    t if t.starts_with(".range") => (", IP range", &t[6..]),
                    t if t.starts_with(".id") => (", id", &t[3..]),
                    t => ("", t),
                };
                out.push_str(field);
                rest = tail;
            }
        } else {
            out.push_str("sources[");
            rest = after;
        }
    }
    out.push_str(rest);
    let out = out.replace(
        "(add it under [[agent]] first)",
        "(register it on the Update agents page first)",
    );
    match out.char_indices().nth(300) {
        None => out,
        Some((at, _)) => format!("{}… (message cut; {} bytes)", &out[..at], out.len()),
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

#[cfg(test)]
mod tests {
    use super::*;

    // Positions count from 1 and policy-file syntax becomes the console's words.
    #[test]
    fn plain_words() {
        assert_eq!(
            plain("sources[5].url: `x` is not a URL"),
            "entry 6, URL: `x` is not a URL"
        );
        assert_eq!(plain("sources[0]: bad"), "entry 1: bad");
        assert_eq!(
            plain("agent: `1.2.3.4:5` is not a registered update agent (add it under [[agent]] first)"),
            "agent: `1.2.3.4:5` is not a registered update agent (register it on the Update agents page first)"
        );
        assert_eq!(plain("sources[x] stays"), "sources[x] stays");
        assert!(plain(&"a".repeat(100_000)).len() < 1000);
    }
}
