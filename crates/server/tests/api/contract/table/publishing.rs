//! The contract's rows for publishing: programs, delegated builds, rollouts and the served
//! repository.

use cascade_proto as p;
use serde_json::json;

use crate::contract::row::{answer, body, raw, row, Answer, Row, Who};

/// The publishing operations, in the order the drive runs them.
pub(super) fn rows() -> Vec<Row> {
    use Who::{Admin, Anyone};
    vec![
        row(
            "get",
            "/api/programs",
            Admin,
            None,
            200,
            answer::<p::ProgramsResponse>(),
            "/api/programs",
            200,
        ),
        // The body (here the JSON text `"build"`) is published as the file's bytes.
        row(
            "post",
            "/api/programs/{name}/{version}",
            Admin,
            raw("build"),
            201,
            answer::<p::ProgramView>(),
            "/api/programs/cascade-agent-linux-x86_64/1?file=cascade",
            201,
        ),
        // The body (the JSON text `"build"`) is staged as content with that SHA-256.
        row(
            "put",
            "/api/delegations/{role}/files/{sha256}",
            Admin,
            raw("build"),
            201,
            answer::<p::DelegatedFile>(),
            "/api/delegations/build-team/files/e99adbe058517220ccf009fde7ac217b5e4d41a23615e5f358aabdda5b696e87",
            201,
        ),
        // The test server's site repository delegates to no role: the drive is refused.
        row(
            "post",
            "/api/delegations/{role}",
            Admin,
            body(&p::DelegatedMetadata {
                signed: json!({"_type": "targets", "version": 1}),
                signatures: Vec::new(),
            }),
            201,
            answer::<p::DelegatedPublished>(),
            "/api/delegations/build-team",
            404,
        ),
        // After the row above, which needs the role not delegated yet.
        row(
            "put",
            "/api/delegations/{role}",
            Admin,
            body(&p::NewDelegation {
                keys: vec![json!({
                    "keytype": "ed25519",
                    "scheme": "ed25519",
                    "keyval": {"public": "d7f1b7a8c0e4f5a6b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0"}
                })],
                threshold: 1,
                paths: vec!["programs/scanner/*/*".into()],
            }),
            201,
            answer::<p::Delegated>(),
            "/api/delegations/build-team",
            201,
        ),
        row(
            "post",
            "/api/rollouts",
            Admin,
            body(&p::NewRollout {
                program: "cascade-agent-linux-x86_64".into(),
                version: "2".into(),
                previous_version: None,
                rings: vec![
                    p::RingSpec {
                        name: "canary".into(),
                        clients: vec!["CLIENT".into()],
                        ip_ranges: vec!["10.0.0.0/24".into()],
                        percent: Some(1.5),
                        soak_secs: 3600,
                        max_failures: 0,
                    },
                    p::RingSpec {
                        name: "everyone".into(),
                        percent: Some(100.0),
                        ..p::RingSpec::default()
                    },
                ],
            }),
            201,
            answer::<p::RolloutView>(),
            "/api/rollouts",
            201,
        ),
        row(
            "get",
            "/api/rollouts",
            Admin,
            None,
            200,
            answer::<p::RolloutsResponse>(),
            "/api/rollouts",
            200,
        ),
        row(
            "get",
            "/api/rollouts/{id}",
            Admin,
            None,
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1",
            200,
        ),
        row(
            "post",
            "/api/rollouts/{id}/halt",
            Admin,
            body(&p::RolloutAction {
                reason: Some("checking a report".into()),
            }),
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1/halt",
            200,
        ),
        row(
            "post",
            "/api/rollouts/{id}/promote",
            Admin,
            body(&p::RolloutAction { reason: None }),
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1/promote",
            200,
        ),
        row(
            "post",
            "/api/rollouts/{id}/rollback",
            Admin,
            body(&p::RolloutAction::default()),
            200,
            answer::<p::RolloutView>(),
            "/api/rollouts/1/rollback",
            200,
        ),
        row(
            "get",
            "/repo/{path}",
            Anyone,
            None,
            200,
            Answer::Plain("string"),
            "/repo/missing.json",
            404,
        ),
    ]
}
