//! The repository a plan step stands for (`/repo/<trust domain>/` below the server, an
//! agent or a URL source; the upstream itself) and the verifying client that reads it, from
//! the pinned root and with the server's announced floor.

use cascade_core::{Category, StepSource, TrustDomain};
use cascade_repo::{FailureReason, RepoClient, RepoSource, SourceTransport};
use url::Url;

use super::debris::partial_dir;
use super::Updater;

impl Updater {
    /// The repository source a plan step stands for, for `category`'s trust domain.
    ///
    /// # Errors
    /// A URL that cannot be joined.
    pub fn source_for(
        &self,
        step: &StepSource,
        category: Category,
    ) -> Result<RepoSource, FailureReason> {
        let bad = |e: url::ParseError| FailureReason::Local(e.to_string());
        let base = match repo_root(step, &self.server).map_err(bad)? {
            Some(root) => root
                .join(&format!("{}/", TrustDomain::of(category)))
                .map_err(bad)?,
            // The upstream itself is the components repository.
            None => match step {
                StepSource::ActiveUpdate(u) => with_slash(u),
                _ => {
                    return Err(FailureReason::Local(format!(
                        "{step} has no repository root"
                    )))
                }
            },
        };
        Ok(RepoSource {
            label: step.to_string(),
            base,
        })
    }

    /// What identifies a step's source across categories: the host and port it is reached at.
    pub(super) fn source_key(&self, step: &StepSource) -> String {
        let url = match (repo_root(step, &self.server), step) {
            (Ok(Some(root)), _) => root,
            (_, StepSource::ActiveUpdate(u)) => u.clone(),
            _ => return step.to_string(),
        };
        format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        )
    }

    pub(crate) fn client_for(&self, category: Category) -> Result<RepoClient, FailureReason> {
        self.client_with(category, self.transport.sibling())
    }

    /// [`Updater::client_for`] through `transport`.
    fn client_with(
        &self,
        category: Category,
        transport: SourceTransport,
    ) -> Result<RepoClient, FailureReason> {
        let dir = self.data.trust(TrustDomain::of(category));
        let root = std::fs::read(dir.join("pinned-root.json")).map_err(|_| {
            FailureReason::Local(format!(
                "no trusted root for {} content ({} is missing)",
                TrustDomain::of(category),
                dir.join("pinned-root.json").display()
            ))
        })?;
        RepoClient::with_transport(root, &dir, transport, self.bind)
            .map(|c| c.with_partial_dir(&partial_dir(&self.data)))
    }

    /// Like [`Updater::client_for`], refusing sources older than the floor the server
    /// announced for `category`'s trust domain.
    /// `probe`: the source failed to answer earlier in this cycle; its header timeout is the
    /// short probe timeout.
    pub(super) fn floored_client_for(
        &self,
        category: Category,
        probe: bool,
    ) -> Result<RepoClient, FailureReason> {
        let transport = if probe {
            self.transport.probe_sibling()
        } else {
            self.transport.sibling()
        };
        // Relays revalidate a timestamp older than this (`docs/operating.md#relays-serve-all-metadata`).
        let transport = match crate::relay::floor_header(&self.floors) {
            Some((name, value)) => transport.with_header(name, value),
            None => transport,
        };
        let client = self.client_with(category, transport)?;
        Ok(match self.floors.get(&TrustDomain::of(category)) {
            Some(v) => client.with_min_timestamp_version(*v),
            None => client,
        })
    }
}

/// The `/repo/` root a plan step serves (both trust domains below it), or `None` for the
/// upstream, which is the components repository itself rather than a cascade tree.
///
/// # Errors
/// A URL that cannot be formed.
pub fn repo_root(step: &StepSource, server: &Url) -> Result<Option<Url>, url::ParseError> {
    Ok(match step {
        StepSource::Server => Some(server.join("repo/")?),
        StepSource::Agent(addr) => Some(Url::parse(&format!("http://{addr}/repo/"))?),
        StepSource::Url(u) => Some(with_slash(u)),
        StepSource::ActiveUpdate(_) => None,
    })
}

pub(super) fn with_slash(u: &Url) -> Url {
    let mut u = u.clone();
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    u
}
