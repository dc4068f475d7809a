//! Enrollment: the enrollment token, the server's CA checked against the token's hash and
//! pinned, the roots the token names pinned, the identity stored
//! (`docs/architecture.md#trust-model`).

use cascade_client::proto::EnrollRequest;
use cascade_client::Client;
use cascade_core::TrustDomain;
use url::Url;

use super::config::{AgentConfig, AgentError};
use crate::state::{DataDir, Identity};

/// [`enroll`] with `first`, else, while the one asked is down, with the next of
/// `cfg.more_servers`; the identity stores every server.
pub(super) async fn enroll_any(
    data: &DataDir,
    cfg: &AgentConfig,
    first: &Url,
    token: &str,
) -> Result<Identity, AgentError> {
    let mut all = vec![first.clone()];
    for url in &cfg.more_servers {
        if !all.contains(url) {
            all.push(url.clone());
        }
    }
    let mut last = None;
    for server in &all {
        match enroll(data, cfg, server, token, &all).await {
            Err(AgentError::Api(e)) if crate::servers::is_down(&e) && all.len() > 1 => {
                tracing::warn!(server = %server, error = %e, "server down; enrolling with the next one");
                last = Some(AgentError::Api(e));
            }
            done => return done,
        }
    }
    Err(last.unwrap_or(AgentError::NotEnrolled))
}

/// Enrolls with the full enrollment token `token` (`docs/operating.md#enrollment-token-format`),
/// trusting nothing on first contact (`docs/architecture.md#trust-model`): fetches the
/// server's CA certificate over a connection it does not yet trust and refuses it unless its
/// SHA-256 is the token's; from then on trusts only that CA; fetches each `1.root.json` whose
/// hash the token carries and refuses it unless the hash matches; only then enrolls and
/// stores the CA, the roots (where none is pinned yet) and the identity.
async fn enroll(
    data: &DataDir,
    cfg: &AgentConfig,
    server: &Url,
    token: &str,
    all: &[Url],
) -> Result<Identity, AgentError> {
    use cascade_repo::fsutil::sha256_hex;
    let token: cascade_client::proto::EnrollmentTokenText = token.parse()?;
    let ca = match token.ca_sha256 {
        Some(want) => {
            let pem = cascade_client::fetch_ca_unverified(server, cfg.bind_ip).await?;
            let found = sha256_hex(&pem);
            if found != want.to_hex() {
                return Err(AgentError::CaMismatch {
                    expected: want.to_hex(),
                    found,
                });
            }
            Some(pem)
        }
        None => None,
    };
    let api = Client::builder(server.clone())
        .bind(cfg.bind_ip)
        .trust_ca_pem(ca.clone())
        .build()?;
    let mut roots = Vec::new();
    for (domain, want) in [
        (TrustDomain::Site, token.site_root_sha256),
        (TrustDomain::Upstream, token.upstream_root_sha256),
    ] {
        let Some(want) = want else { continue };
        // A root given out of band (`--site-root`, `--upstream-root`) is the one pinned.
        if cfg.pinned_roots.iter().any(|(d, _)| *d == domain) {
            continue;
        }
        let bytes = api
            .repo_file(&format!("repo/{domain}/metadata/1.root.json"))
            .await?;
        let found = sha256_hex(&bytes);
        if found != want.to_hex() {
            return Err(AgentError::RootMismatch {
                domain,
                expected: want.to_hex(),
                found,
            });
        }
        roots.push((domain, bytes));
    }
    let body = EnrollRequest {
        name: cfg.name.clone(),
        domain: cfg.domain.clone(),
        agent_address: cfg.relay_listen.map(|a| a.to_string()),
    };
    let enrolled = api.enroll(&token.secret, &body).await?;
    if let Some(pem) = &ca {
        data.save_server_ca(pem)?;
    }
    for (domain, bytes) in roots {
        let dir = data.trust(domain);
        let pinned = dir.join("pinned-root.json");
        // A root pinned before (an enrollment again after a lost identity) has moved on
        // from version 1; it stays.
        if std::fs::read(&pinned).is_ok_and(|b| cascade_repo::valid_root(&b)) {
            continue;
        }
        for place in [pinned, dir.join("pinned-root.copy.json")] {
            cascade_repo::fsutil::write_atomic(&place, &bytes).map_err(|source| {
                crate::state::StateError::Io {
                    path: place.clone(),
                    source,
                }
            })?;
        }
    }
    // The replicas the server advertises join the ones given (`docs/operating.md#replicas`).
    let mut all = all.to_vec();
    for text in &enrolled.servers {
        match Url::parse(text) {
            Ok(url) if !all.contains(&url) => all.push(url),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(url = %text, error = %e, "the server advertises a replica URL that does not parse; ignored");
            }
        }
    }
    let id = Identity {
        server: server.clone(),
        servers: if all.len() > 1 { all } else { Vec::new() },
        client_id: enrolled.client_id,
        credential: enrolled.credential,
    };
    data.save_identity(&id)?;
    Ok(id)
}
