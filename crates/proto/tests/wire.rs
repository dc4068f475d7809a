//! The wire types serialize to the JSON the API has always spoken.
#![allow(missing_docs)]

use cascade_proto::{
    EnrollmentTokenInfo, ErrorBody, ErrorDetail, Health, HealthStatus, SettingsPatch,
    SourcesResponse,
};
use serde_json::json;

// `activeupdate_url` absent keeps, `null` clears, a string sets; absent fields are not sent.
#[test]
fn settings_patch_tells_absent_from_null() {
    let keep: SettingsPatch = serde_json::from_value(json!({})).unwrap();
    assert_eq!(keep.activeupdate_url, None);
    let clear: SettingsPatch = serde_json::from_value(json!({"activeupdate_url": null})).unwrap();
    assert_eq!(clear.activeupdate_url, Some(None));
    assert_eq!(
        serde_json::to_value(&clear).unwrap(),
        json!({"activeupdate_url": null})
    );
    assert_eq!(serde_json::to_value(&keep).unwrap(), json!({}));
    assert!(serde_json::from_value::<SettingsPatch>(json!({"mood": 1})).is_err());
}

// Optional parts of answers are left out exactly where the server always left them out.
#[test]
fn optional_fields_match_the_api() {
    let none = EnrollmentTokenInfo {
        id: None,
        created_at: None,
    };
    assert_eq!(serde_json::to_value(&none).unwrap(), json!({"id": null}));
    let ok = Health {
        status: HealthStatus::Ok,
        revision: Some(3),
        error: None,
    };
    assert_eq!(
        serde_json::to_value(&ok).unwrap(),
        json!({"status": "ok", "revision": 3})
    );
    let list = SourcesResponse {
        revision: 2,
        sources: vec![],
        id: None,
        deleted: None,
    };
    assert_eq!(
        serde_json::to_value(&list).unwrap(),
        json!({"revision": 2, "sources": []})
    );
    let err = ErrorBody {
        error: ErrorDetail {
            code: "request.ip".into(),
            field: None,
            message: "m".into(),
            current_revision: None,
            reason: None,
        },
    };
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"error": {"code": "request.ip", "field": null, "message": "m"}})
    );
}
