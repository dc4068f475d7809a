//! The contract's rows for the operators' tools: mirroring, the audit log, the policy's
//! history, enrollment tokens, agent approval, accounts and API tokens.

use cascade_proto as p;

use crate::contract::row::{answer, body, row, Row, Who};

/// The operators' tools, in the order the drive runs them.
pub(super) fn rows() -> Vec<Row> {
    use Who::Admin;
    vec![
        row(
            "get",
            "/api/repo/mirror",
            Admin,
            None,
            200,
            answer::<p::MirrorState>(),
            "/api/repo/mirror",
            200,
        ),
        // Mirroring is not configured here (the mirror tests drive it): the refusal is driven.
        row(
            "post",
            "/api/repo/mirror",
            Admin,
            None,
            200,
            answer::<p::MirrorStatus>(),
            "/api/repo/mirror",
            400,
        ),
        row(
            "get",
            "/api/audit",
            Admin,
            None,
            200,
            answer::<p::AuditResponse>(),
            "/api/audit",
            200,
        ),
        // The history holds revision 1 (the default policy): restoring it is a new revision.
        row(
            "post",
            "/api/policy/restore",
            Admin,
            body(&p::RestoreRequest { revision: 1 }),
            200,
            answer::<p::PolicyResponse>(),
            "/api/policy/restore",
            200,
        ),
        row(
            "post",
            "/api/enrollment-tokens",
            Admin,
            body(&p::NewEnrollmentToken {
                name: "batch".into(),
                expires_in_secs: Some(3600),
                max_uses: Some(10),
                agent: false,
            }),
            201,
            answer::<p::IssuedEnrollmentToken>(),
            "/api/enrollment-tokens",
            201,
        ),
        row(
            "get",
            "/api/enrollment-tokens",
            Admin,
            None,
            200,
            answer::<p::EnrollmentTokensResponse>(),
            "/api/enrollment-tokens",
            200,
        ),
        // Token ids are random: the refusal of an unknown one is driven.
        row(
            "delete",
            "/api/enrollment-tokens/{id}",
            Admin,
            None,
            200,
            answer::<p::TokenRevoked>(),
            "/api/enrollment-tokens/00ff00ff",
            404,
        ),
        // The enrolled client has no agent address: the refusal is driven.
        row(
            "post",
            "/api/clients/{id}/approve-agent",
            Admin,
            None,
            200,
            answer::<p::ClientView>(),
            "/api/clients/CLIENT/approve-agent",
            409,
        ),
        row(
            "post",
            "/api/users",
            Admin,
            body(&p::NewUser {
                name: "vera".into(),
                role: p::UserRole::Viewer,
                password: "vera-password-long".into(),
            }),
            201,
            answer::<p::UserView>(),
            "/api/users",
            201,
        ),
        row(
            "get",
            "/api/users",
            Admin,
            None,
            200,
            answer::<p::UsersResponse>(),
            "/api/users",
            200,
        ),
        row(
            "patch",
            "/api/users/{name}",
            Admin,
            body(&p::UserPatch {
                role: Some(p::UserRole::Operator),
                password: None,
            }),
            200,
            answer::<p::UserView>(),
            "/api/users/vera",
            200,
        ),
        row(
            "post",
            "/api/tokens",
            Admin,
            body(&p::NewToken {
                label: "ci".into(),
                user: Some("vera".into()),
                expires_in_secs: Some(3600),
            }),
            201,
            answer::<p::IssuedToken>(),
            "/api/tokens",
            201,
        ),
        row(
            "get",
            "/api/tokens",
            Admin,
            None,
            200,
            answer::<p::TokensResponse>(),
            "/api/tokens",
            200,
        ),
        // Token ids are random: the refusal of an unknown one is driven.
        row(
            "delete",
            "/api/tokens/{id}",
            Admin,
            None,
            200,
            answer::<p::TokenRevoked>(),
            "/api/tokens/00ff00ff",
            404,
        ),
        row(
            "delete",
            "/api/users/{name}",
            Admin,
            None,
            200,
            answer::<p::UserDeleted>(),
            "/api/users/vera",
            200,
        ),
        row(
            "delete",
            "/api/clients/{id}",
            Admin,
            None,
            200,
            answer::<p::ClientDeleted>(),
            "/api/clients/CLIENT",
            200,
        ),
    ]
}
