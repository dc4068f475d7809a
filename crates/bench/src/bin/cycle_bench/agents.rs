//! The simulated kept agents: each its own source address, HTTPS client and check-in, and
//! the cycle a kept agent runs (the policy unless unchanged, then the check-in).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context as _, Result};
use cascade_client::proto::{CheckInResponse, EnrollRequest};
use cascade_client::Client;
use cascade_core::report::{Attempt, CheckIn, Outcome, UpdateReport};
use cascade_core::Category;
use futures::StreamExt as _;
use url::Url;

use crate::Args;

/// One simulated kept agent.
pub(crate) struct Agent {
    pub(crate) client: Client,
    pub(crate) credential: String,
    /// The policy revision it holds (from its last 200).
    pub(crate) revision: Option<i64>,
    pub(crate) check_in: CheckIn,
}

/// Client `k`'s source address: 127.20.(k / 250).(k % 250 + 1).
pub(crate) fn source(k: usize) -> Result<IpAddr> {
    let hi = u8::try_from(k / 250).context("at most 64,000 clients")?;
    let lo = u8::try_from(k % 250 + 1).context("client address")?;
    Ok(IpAddr::V4(Ipv4Addr::new(127, 20, hi, lo)))
}

/// What a kept agent reports after a cycle with nothing new: the versions it has, one
/// up-to-date attempt per category from its relay.
pub(crate) fn check_in(ip: IpAddr) -> CheckIn {
    let attempts = [Category::Components, Category::Programs]
        .into_iter()
        .map(|c| Attempt {
            category: Some(c),
            step: 1,
            source: "agent:127.0.0.2:8080".into(),
            outcome: Outcome::UpToDate,
            reason: None,
            bytes: 1_800,
            millis: 4,
        })
        .collect();
    CheckIn {
        ip: Some(ip.to_string()),
        installed: [(Category::Components, "7".to_owned())].into(),
        last_update: Some(UpdateReport {
            finished_at: Some(1_700_000_000),
            outcome: Outcome::UpToDate,
            attempts,
        }),
        relay: None,
        agent_version: Some("0.1.0".into()),
    }
}

/// Enrolls every client, `concurrency` at a time.
pub(crate) async fn enroll(url: &Url, ca: &[u8], token: &str, args: &Args) -> Result<Vec<Agent>> {
    let made: Vec<Result<Agent>> = futures::stream::iter(0..args.clients)
        .map(|k| {
            let (url, ca, token) = (url.clone(), ca.to_owned(), token.to_owned());
            async move {
                let ip = source(k)?;
                let http = cascade_client::http_builder(Some(&ca))?
                    .local_address(ip)
                    .timeout(Duration::from_secs(30))
                    .build()?;
                let client = Client::with_http(url, http);
                let done = client
                    .enroll(
                        &token,
                        &EnrollRequest {
                            name: format!("cycle-{k}"),
                            ..EnrollRequest::default()
                        },
                    )
                    .await
                    .with_context(|| format!("enrolling client {k}"))?;
                Ok(Agent {
                    client,
                    credential: done.credential,
                    revision: None,
                    check_in: check_in(ip),
                })
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    made.into_iter().collect()
}

/// The clients of the reference run: the same addresses and check-ins, holding `revision`
/// (the reference answers every policy request 304 and every check-in with it).
pub(crate) fn reference_agents(
    url: &Url,
    ca: &[u8],
    revision: i64,
    clients: usize,
) -> Result<Vec<Agent>> {
    (0..clients)
        .map(|k| {
            let ip = source(k)?;
            let http = cascade_client::http_builder(Some(ca))?
                .local_address(ip)
                .timeout(Duration::from_secs(30))
                .build()?;
            Ok(Agent {
                client: Client::with_http(url.clone(), http),
                credential: "reference".into(),
                revision: Some(revision),
                check_in: check_in(ip),
            })
        })
        .collect()
}

/// nginx's answers to a cycle's two requests: 304 to the policy, `revision` to the check-in.
pub(crate) fn reference_locations(revision: i64) -> Result<String> {
    let answer = serde_json::to_string(&CheckInResponse {
        policy_revision: revision,
    })?;
    Ok(format!(
        "location = /api/client/policy {{ add_header ETag '\"{revision}\"' always; return 304; }}\n\
         location = /api/client/checkin {{ default_type application/json; return 200 '{answer}'; }}\n\
         location / {{ return 404; }}"
    ))
}

/// Clients `0..n` in `workers` groups: worker w takes clients w, w + workers, …
pub(crate) fn grouped(agents: Vec<Agent>, workers: usize) -> Vec<Vec<Agent>> {
    let mut groups: Vec<Vec<Agent>> = (0..workers).map(|_| Vec::new()).collect();
    for (k, a) in agents.into_iter().enumerate() {
        if let Some(g) = groups.get_mut(k % workers) {
            g.push(a);
        }
    }
    groups
}

/// One kept agent's cycle: the policy unless unchanged, then the check-in.
pub(crate) async fn cycle(a: &mut Agent) -> Result<()> {
    let answer = a.client.policy(&a.credential, a.revision).await?;
    if let Some(p) = answer.policy {
        a.revision = Some(p.revision);
    }
    let done = a.client.checkin(&a.credential, &a.check_in).await?;
    if Some(done.policy_revision) != a.revision {
        // The policy moved on since: the next cycle fetches it.
        a.revision = None;
    }
    Ok(())
}
