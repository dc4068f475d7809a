//! JSON bodies must name their fields: serde's derived struct deserializers also read a
//! positional array (`["customized"]` for `{"mode": "customized", …}`), filling the rest
//! with defaults, which would let a short array silently reset a policy. Every JSON body
//! goes through [`positional_field`] after it parsed (`crate::error::ApiJson`): the parsed
//! value is serialized again, and wherever it is an object the body must have had an object
//! too, so one generic check covers every request type (`docs/api.md`).

use serde_json::Value;

/// The first field (dotted path, `body` for the whole body) where `body` holds an array but
/// `parsed` (the request value serialized again) holds an object.
pub fn positional_field(body: &Value, parsed: &Value) -> Option<String> {
    walk(body, parsed, "")
}

fn walk(body: &Value, parsed: &Value, path: &str) -> Option<String> {
    match (body, parsed) {
        (Value::Array(_), Value::Object(_)) => Some(if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }),
        (Value::Object(b), Value::Object(p)) => p.iter().find_map(|(key, pv)| {
            let sub = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            b.get(key).and_then(|bv| walk(bv, pv, &sub))
        }),
        (Value::Array(b), Value::Array(p)) => b
            .iter()
            .zip(p)
            .enumerate()
            .find_map(|(i, (bv, pv))| walk(bv, pv, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Whether `bytes` hold any JSON array at all (when not, nothing can be positional).
pub fn has_array(bytes: &[u8]) -> bool {
    bytes.contains(&b'[')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Arrays where objects belong are found at any depth, and named fields pass.
    #[test]
    fn finds_positional_arrays() {
        let parsed =
            json!({"mode": "customized", "fallback": {"a": true}, "agent": [{"address": "x"}]});
        assert_eq!(
            positional_field(&json!([]), &parsed).as_deref(),
            Some("body")
        );
        assert_eq!(
            positional_field(&json!({"fallback": [true]}), &parsed).as_deref(),
            Some("fallback")
        );
        assert_eq!(
            positional_field(&json!({"agent": [["x"]]}), &parsed).as_deref(),
            Some("agent[0]")
        );
        assert_eq!(
            positional_field(
                &json!({"agent": [{"address": "x"}], "mode": "customized"}),
                &parsed
            ),
            None
        );
    }
}
