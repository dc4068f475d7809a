//! Progressive rollouts (`docs/operating.md#rollouts`): a program version goes out in rings.
//!
//! - **Who is in a ring**: a client matching any of the ring's client ids or names, IP ranges
//!   (its reported IP, else the IP its check-in came from) or percentage (a stable hash of its
//!   id: the same client is always in the same share). Rings are cumulative: once ring *k* is
//!   reached, the clients of rings 1..=*k* may install the version.
//! - **What each client may install**: the newest rollout of a program decides. Rolling or
//!   halted: clients of the rings reached get the new version, everyone else the previous
//!   one; completed: no pin (the newest version); rolled back: the previous version for
//!   everyone. The pins travel in the client's policy answer ([`pins_for`]) and the rollout
//!   revision is folded into its revision, so agents learn of a change at their next cycle.
//!   A pin only chooses among the targets the agent verified.
//! - **Failure reports**: a client of a reached ring fails when its last update report,
//!   finished since the rollout started, carries a `programs` failure naming the program and
//!   version (`NAME VERSION` or `NAME/VERSION`): a failed install or an agent self-update
//!   rolled back (`selfupdate.rolled_back`).
//! - **Promotion**: [`run_on_schedule`] looks at every rolling rollout each tick, by the
//!   injected clock: more failing clients than the current ring's `max_failures` halts it
//!   (audit record by `server:rollouts`); its soak time over, it is promoted to the next ring
//!   (or completed after the last). Each change is conditional on the revision read, so
//!   replicas sharing the database change a rollout once.
//! - **Notify**: starting and promoting a rollout notifies the clients of the ring just
//!   reached only (the notice carries them to every replica: `crate::notify::issue_scoped`,
//!   `Notifier::reaches`, consulted by the event streams); uploading the
//!   version of a rollout notifies the clients of the rings it reached; a roll back notifies
//!   everyone.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use cascade_core::report::Outcome;
use cascade_core::{Category, IpRange};
use cascade_proto::{
    NewRollout, RingSpec, RingState, RingView, RolloutState, RolloutView, RolloutsResponse,
};

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ClientRecord, NewAudit, NewRolloutRecord, RolloutChange, RolloutRecord, Store};

/// At most this many rings per rollout.
pub const MAX_RINGS: usize = 20;
/// At most this many clients and ranges per ring.
pub const MAX_RING_ENTRIES: usize = 10_000;
/// How often rolling rollouts are looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// The actor of automatic changes in the audit log.
pub const AUTO_ACTOR: &str = "server:rollouts";
/// One ring's selectors, parsed.
struct Ring<'a> {
    spec: &'a RingSpec,
    ranges: Vec<IpRange>,
}

impl<'a> Ring<'a> {
    fn of(spec: &'a RingSpec) -> Self {
        Ring {
            spec,
            ranges: spec
                .ip_ranges
                .iter()
                .filter_map(|r| IpRange::parse(r).ok())
                .collect(),
        }
    }

    fn has(&self, c: &ClientRecord) -> bool {
        if self.spec.clients.iter().any(|n| *n == c.id || *n == c.name) {
            return true;
        }
        if let Some(ip) = client_ip(c) {
            if self.ranges.iter().any(|r| r.contains(ip)) {
                return true;
            }
        }
        self.spec
            .percent
            .is_some_and(|p| f64::from(bucket(&c.id)) < p * 10_000.0)
    }
}

/// The client's IP for ring membership: the one it reported, else where its check-in came
/// from, else where it enrolled from.
fn client_ip(c: &ClientRecord) -> Option<IpAddr> {
    [
        c.reported_ip.as_deref(),
        c.peer_ip.as_deref(),
        Some(c.enrolled_from.as_str()),
    ]
    .into_iter()
    .flatten()
    .find_map(|t| t.parse().ok())
}

/// The client's place in the fleet, 0 to 999,999, from a SHA-256 of its id: stable, so a
/// client in the first 1 % stays there.
pub fn bucket(id: &str) -> u32 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    u32::try_from(u64::from_be_bytes(first) % 1_000_000).unwrap_or(0)
}

/// The first ring (0-based) `c` is in, if any.
fn ring_of(rings: &[Ring<'_>], c: &ClientRecord) -> Option<usize> {
    rings.iter().position(|r| r.has(c))
}

/// Whether `c`'s last report, finished at or after `since`, says `program` `version` failed.
pub fn failed(c: &ClientRecord, program: &str, version: &str, since: i64) -> bool {
    let Some(report) = &c.last_update else {
        return false;
    };
    if report.finished_at.is_none_or(|t| t < since) {
        return false;
    }
    let spaced = format!("{program} {version}");
    let slashed = format!("{program}/{version}");
    let programs = || {
        report
            .attempts
            .iter()
            .filter(|a| a.category == Some(Category::Programs))
    };
    let named = programs().any(|a| {
        a.reason
            .as_ref()
            .and_then(|r| r.failure())
            .is_some_and(|f| f.message.contains(&spaced) || f.message.contains(&slashed))
    });
    // Every source failed for programs while the version is not installed: its install
    // failed (a corrupt or unfetchable build fails at every source).
    let quit = programs().any(|a| a.outcome == Outcome::Quit) && !updated(c, program, version);
    named || quit
}

/// Whether `c` reports `program` `version` installed.
fn updated(c: &ClientRecord, program: &str, version: &str) -> bool {
    let want = format!("{program} {version}");
    c.installed
        .get(&Category::Programs)
        .is_some_and(|s| s.split(", ").any(|item| item == want))
}

/// The version of each rolled-out program client `c` may install (`None`: none), by the
/// newest rollout of each program.
pub fn pins_for(governing: &[RolloutRecord], c: &ClientRecord) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for r in governing {
        let pin = match r.state {
            RolloutState::Completed => continue,
            RolloutState::RolledBack => r.previous_version.clone(),
            RolloutState::Rolling | RolloutState::Halted => {
                let rings: Vec<Ring<'_>> = r.rings.iter().map(Ring::of).collect();
                if ring_of(&rings, c).is_some_and(|i| i <= r.ring) {
                    Some(r.version.clone())
                } else {
                    r.previous_version.clone()
                }
            }
        };
        out.insert(r.program.clone(), pin);
    }
    out
}

/// The rollout revision and the pins of client `c`.
///
/// # Errors
/// Database errors.
pub async fn client_pins(
    store: &Store,
    c: &ClientRecord,
) -> Result<(i64, BTreeMap<String, Option<String>>), ApiError> {
    let revision = store.rollout_revision().await?;
    if revision == 0 {
        return Ok((0, BTreeMap::new()));
    }
    let governing = store.governing_rollouts().await?;
    Ok((revision, pins_for(&governing, c)))
}

/// Counts per ring: (members, updated, failing ids).
struct Counts {
    clients: u64,
    updated: u64,
    failing: Vec<String>,
}

/// Counts `r`'s clients per ring among `clients`; failures from reports finished at or after
/// `since`.
fn count(r: &RolloutRecord, clients: &[ClientRecord], since: i64) -> Vec<Counts> {
    let rings: Vec<Ring<'_>> = r.rings.iter().map(Ring::of).collect();
    let mut out: Vec<Counts> = rings
        .iter()
        .map(|_| Counts {
            clients: 0,
            updated: 0,
            failing: Vec::new(),
        })
        .collect();
    for c in clients {
        let Some(i) = ring_of(&rings, c) else {
            continue;
        };
        let Some(slot) = out.get_mut(i) else {
            continue;
        };
        slot.clients += 1;
        if updated(c, &r.program, &r.version) {
            slot.updated += 1;
        }
        if i <= r.ring && failed(c, &r.program, &r.version, since) {
            slot.failing.push(c.id.clone());
        }
    }
    out
}

/// The view of `r` with its clients counted among `clients`.
pub fn view(r: &RolloutRecord, clients: &[ClientRecord]) -> RolloutView {
    let counts = count(r, clients, r.created_at);
    let soak = r
        .rings
        .get(r.ring)
        .map_or(0, |s| i64::try_from(s.soak_secs).unwrap_or(i64::MAX));
    RolloutView {
        id: r.id,
        program: r.program.clone(),
        version: r.version.clone(),
        previous_version: r.previous_version.clone(),
        state: r.state,
        ring: u32::try_from(r.ring + 1).unwrap_or(u32::MAX),
        ring_started_at: r.ring_started_at,
        promote_at: r.ring_started_at.saturating_add(soak),
        reason: r.reason.clone(),
        rings: r
            .rings
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(i, (spec, c))| RingView {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                spec: spec.clone(),
                state: ring_state(r, i),
                clients: c.clients,
                updated: c.updated,
                failures: c.failing.len() as u64,
                failing: c.failing.into_iter().take(20).collect(),
            })
            .collect(),
        created_at: r.created_at,
        created_by: r.created_by.clone(),
        updated_at: r.updated_at,
    }
}

fn ring_state(r: &RolloutRecord, i: usize) -> RingState {
    match r.state {
        RolloutState::Completed => RingState::Promoted,
        _ if i < r.ring => RingState::Promoted,
        _ if i > r.ring => RingState::Waiting,
        RolloutState::Rolling => RingState::Soaking,
        RolloutState::Halted | RolloutState::RolledBack => RingState::Halted,
    }
}

/// Every rollout, newest first, with its counts.
///
/// # Errors
/// Database errors.
pub async fn list(store: &Store) -> Result<RolloutsResponse, ApiError> {
    let rollouts = store.rollouts().await?;
    let clients = if rollouts.is_empty() {
        Vec::new()
    } else {
        store.clients().await?
    };
    Ok(RolloutsResponse {
        rollouts: rollouts.iter().map(|r| view(r, &clients)).collect(),
    })
}

/// One rollout with its counts.
///
/// # Errors
/// 404 when there is none; database errors.
pub async fn one(store: &Store, id: i64) -> Result<RolloutView, ApiError> {
    let r = found(store, id).await?;
    let clients = store.clients().await?;
    Ok(view(&r, &clients))
}

async fn found(store: &Store, id: i64) -> Result<RolloutRecord, ApiError> {
    store.rollout(id).await?.ok_or_else(|| ApiError::NotFound {
        what: "rollout",
        id: id.to_string(),
    })
}

/// Checks a new rollout's fields; 400 naming the first bad one (rings 1-based).
///
/// # Errors
/// What is wrong.
pub fn check(n: &NewRollout) -> Result<(), ApiError> {
    cascade_repo::TargetPath::new(Category::Programs, &n.program, &n.version, "file").map_err(
        |e| {
            let field = match &e {
                cascade_repo::LayoutError::BadSegment { what, .. } if *what == "version" => {
                    "version"
                }
                _ => "program",
            };
            ApiError::bad("rollout.program", field, e.to_string())
        },
    )?;
    if let Some(p) = &n.previous_version {
        cascade_repo::TargetPath::new(Category::Programs, &n.program, p, "file").map_err(|e| {
            ApiError::bad(
                "rollout.previous_version",
                "previous_version",
                e.to_string(),
            )
        })?;
        if *p == n.version {
            return Err(ApiError::bad(
                "rollout.previous_version",
                "previous_version",
                format!("previous_version: `{p}` is the version rolled out"),
            ));
        }
    }
    if n.rings.is_empty() || n.rings.len() > MAX_RINGS {
        return Err(ApiError::bad(
            "rollout.rings",
            "rings",
            format!(
                "rings: {} given, a rollout has 1 to {MAX_RINGS}",
                n.rings.len()
            ),
        ));
    }
    let mut names = HashSet::new();
    for (i, ring) in n.rings.iter().enumerate() {
        check_ring(i + 1, ring, &mut names)?;
    }
    Ok(())
}

/// Checks ring number `at` (1-based) whose name must not be in `names` (it is added).
fn check_ring(at: usize, ring: &RingSpec, names: &mut HashSet<String>) -> Result<(), ApiError> {
    let name = ring.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad(
            "rollout.ring_name",
            &format!("rings[{at}].name"),
            format!(
                "rings[{at}].name: `{}` must be 1 to 100 characters",
                cascade_proto::limits::cut(&ring.name)
            ),
        ));
    }
    cascade_proto::limits::check_text(&format!("rings[{at}].name"), name, 100).map_err(|e| {
        ApiError::bad(
            "rollout.ring_name",
            &format!("rings[{at}].name"),
            e.to_string(),
        )
    })?;
    if !names.insert(name.to_owned()) {
        return Err(ApiError::bad(
            "rollout.ring_name",
            &format!("rings[{at}].name"),
            format!("rings[{at}].name: `{name}` names an earlier ring too"),
        ));
    }
    if ring.clients.is_empty() && ring.ip_ranges.is_empty() && ring.percent.is_none() {
        return Err(ApiError::bad(
            "rollout.ring_empty",
            &format!("rings[{at}]"),
            format!("rings[{at}] (`{name}`) selects no client: give clients, ip_ranges or percent"),
        ));
    }
    if ring.clients.len() + ring.ip_ranges.len() > MAX_RING_ENTRIES {
        return Err(ApiError::bad(
            "rollout.ring_size",
            &format!("rings[{at}]"),
            format!("rings[{at}]: more than {MAX_RING_ENTRIES} clients and ranges"),
        ));
    }
    for (j, c) in ring.clients.iter().enumerate() {
        let field = format!("rings[{at}].clients[{}]", j + 1);
        if c.trim().is_empty() {
            return Err(ApiError::bad(
                "rollout.client",
                &field,
                format!("{field}: empty"),
            ));
        }
        cascade_proto::limits::check_text(&field, c, cascade_proto::limits::MAX_NAME)
            .map_err(|e| ApiError::bad("rollout.client", &field, e.to_string()))?;
    }
    for (j, r) in ring.ip_ranges.iter().enumerate() {
        let field = format!("rings[{at}].ip_ranges[{}]", j + 1);
        IpRange::parse(r).map_err(|e| {
            ApiError::bad(
                "rollout.ip_range",
                &field,
                format!("{field}: `{}`: {e}", cascade_proto::limits::cut(r)),
            )
        })?;
    }
    if let Some(p) = ring.percent {
        if !(0.0..=100.0).contains(&p) {
            return Err(ApiError::bad(
                "rollout.percent",
                &format!("rings[{at}].percent"),
                format!("rings[{at}].percent: `{p}` is not 0 to 100"),
            ));
        }
    }
    Ok(())
}

/// Starts a rollout by `actor`; notifies the clients of its first ring.
///
/// # Errors
/// 400 for a bad field, 409 while another rollout of the program is rolling; database errors.
pub async fn start(st: &AppState, n: &NewRollout, actor: &str) -> Result<RolloutView, ApiError> {
    check(n)?;
    let governing = st.store.governing_rollouts().await?;
    let last = governing.iter().find(|r| r.program == n.program);
    if let Some(r) = last.filter(|r| r.state == RolloutState::Rolling) {
        return Err(ApiError::Conflict {
            code: "rollout.active",
            field: Some("program"),
            message: format!(
                "rollout {} of {} {} is rolling: halt, roll back or complete it first",
                r.id, r.program, r.version
            ),
        });
    }
    let previous = match &n.previous_version {
        Some(p) => Some(p.clone()),
        None => match last {
            Some(r) if r.state == RolloutState::Completed => Some(r.version.clone()),
            Some(r) => r.previous_version.clone(),
            None => newest_published_before(st, &n.program, &n.version).await,
        },
    }
    .filter(|p| *p != n.version);
    let rings: Vec<RingSpec> = n
        .rings
        .iter()
        .map(|r| RingSpec {
            name: r.name.trim().to_owned(),
            ..r.clone()
        })
        .collect();
    let r = st
        .store
        .start_rollout(&NewRolloutRecord {
            program: &n.program,
            version: &n.version,
            previous_version: previous.as_deref(),
            rings: &rings,
            created_by: actor,
        })
        .await?;
    tracing::info!(rollout = r.id, program = %r.program, version = %r.version, previous = ?r.previous_version, "rollout started");
    let clients = st.store.clients().await?;
    notify_ring(st, &r, &clients).await;
    Ok(view(&r, &clients))
}

/// The newest published version of `program` other than `version`, if any.
async fn newest_published_before(st: &AppState, program: &str, version: &str) -> Option<String> {
    let site = st.site.publisher().ok()?;
    let listed = site.listed(Category::Programs).await.ok()?;
    listed
        .into_iter()
        .filter(|l| l.path.name() == program && l.path.version() != version)
        .max_by_key(|l| l.meta.seq)
        .map(|l| l.path.version().to_owned())
}

/// What an admin asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// To the next ring now (or complete it after the last); also resumes a halted one.
    Promote,
    /// Stop where it is.
    Halt,
    /// Pin the previous version for everyone.
    RollBack,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Promote => "promoted",
            Action::Halt => "halted",
            Action::RollBack => "rolled back",
        }
    }
}

/// Applies `action` to rollout `id` by `actor`.
///
/// # Errors
/// 404, 409 when its state does not allow it or a newer rollout of the program exists;
/// database errors.
pub async fn act(
    st: &AppState,
    id: i64,
    action: Action,
    actor: &str,
    reason: Option<String>,
) -> Result<RolloutView, ApiError> {
    if let Some(r) = &reason {
        cascade_proto::limits::check_text("reason", r, 500)
            .map_err(|e| ApiError::bad("request.reason", "reason", e.to_string()))?;
    }
    let r = found(&st.store, id).await?;
    let governing = st.store.governing_rollouts().await?;
    if let Some(newer) = governing
        .iter()
        .find(|g| g.program == r.program && g.id != r.id)
    {
        return Err(ApiError::Conflict {
            code: "rollout.superseded",
            field: Some("id"),
            message: format!(
                "rollout {} is superseded by rollout {} of {} {}",
                r.id, newer.id, newer.program, newer.version
            ),
        });
    }
    let allowed = match action {
        Action::Promote => matches!(r.state, RolloutState::Rolling | RolloutState::Halted),
        Action::Halt => r.state == RolloutState::Rolling,
        Action::RollBack => r.state != RolloutState::RolledBack,
    };
    if !allowed {
        return Err(ApiError::Conflict {
            code: "rollout.state",
            field: Some("state"),
            message: format!(
                "rollout {} is {}: it cannot be {}",
                r.id,
                r.state,
                action.verb()
            ),
        });
    }
    let reason = Some(reason.unwrap_or_else(|| format!("{} by {actor}", action.verb())));
    let now = st.clock.now();
    let change = match action {
        Action::Promote => promotion(&r, now, reason),
        Action::Halt => RolloutChange {
            state: RolloutState::Halted,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason,
        },
        Action::RollBack => RolloutChange {
            state: RolloutState::RolledBack,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason,
        },
    };
    let changed = st
        .store
        .change_rollout(r.id, r.revision, &change)
        .await?
        .ok_or_else(|| ApiError::Conflict {
            code: "rollout.changed",
            field: Some("id"),
            message: format!(
                "rollout {} changed meanwhile: read it again and retry",
                r.id
            ),
        })?;
    tracing::info!(rollout = r.id, action = action.verb(), actor, state = %changed.state, ring = changed.ring + 1, "rollout changed by hand");
    let clients = st.store.clients().await?;
    match action {
        Action::Promote if changed.state == RolloutState::Rolling => {
            notify_ring(st, &changed, &clients).await;
        }
        Action::RollBack => notify_all(st, &changed).await,
        _ => {}
    }
    Ok(view(&changed, &clients))
}

/// The change that promotes `r` now: its next ring, or completed after the last.
fn promotion(r: &RolloutRecord, now: i64, reason: Option<String>) -> RolloutChange {
    if r.ring + 1 < r.rings.len() {
        RolloutChange {
            state: RolloutState::Rolling,
            ring: r.ring + 1,
            ring_started_at: now,
            reason,
        }
    } else {
        RolloutChange {
            state: RolloutState::Completed,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason,
        }
    }
}

/// Notifies the clients of `r`'s current ring (and no earlier one) that it reached them.
async fn notify_ring(st: &AppState, r: &RolloutRecord, clients: &[ClientRecord]) {
    notify_clients(st, r, clients, |ring| ring == r.ring, "ring notified").await;
}

/// After `program` `version` is published: when a rollout of it is rolling or halted, the
/// clients of the rings it reached are notified (a rollout started before the upload notified
/// them when there was nothing to install yet).
pub async fn on_publish(st: &AppState, program: &str, version: &str) {
    let governing = match st.store.governing_rollouts().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the rollouts after a publish");
            return;
        }
    };
    let Some(r) = governing.into_iter().find(|r| {
        r.program == program
            && r.version == version
            && matches!(r.state, RolloutState::Rolling | RolloutState::Halted)
    }) else {
        return;
    };
    let clients = match st.store.clients().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the clients after a publish");
            return;
        }
    };
    let reached = |ring| ring <= r.ring;
    notify_clients(
        st,
        &r,
        &clients,
        reached,
        "rings reached notified of the upload",
    )
    .await;
}

/// Issues a notice for rollout `r` scoped to the `clients` whose ring (0-based) satisfies
/// `in_scope`, and logs `what` with the notice id and how many clients it reaches.
async fn notify_clients(
    st: &AppState,
    r: &RolloutRecord,
    clients: &[ClientRecord],
    in_scope: impl Fn(usize) -> bool,
    what: &str,
) {
    let rings: Vec<Ring<'_>> = r.rings.iter().map(Ring::of).collect();
    let members: HashSet<String> = clients
        .iter()
        .filter(|c| ring_of(&rings, c).is_some_and(&in_scope))
        .map(|c| c.id.clone())
        .collect();
    let reached = members.len();
    let actor = format!("rollout:{}", r.id);
    let issued = crate::notify::issue_scoped(
        &st.notifier,
        &st.store,
        &actor,
        vec![Category::Programs],
        st.clock.now(),
        Some(members),
    )
    .await;
    match issued {
        Ok((id, _)) => {
            tracing::info!(
                rollout = r.id,
                ring = r.ring + 1,
                notice = id,
                clients = reached,
                "{what}"
            );
        }
        Err(e) => tracing::warn!(rollout = r.id, error = %e, "cannot notify the rollout's clients"),
    }
}

/// Notifies every client (a roll back concerns all of them).
async fn notify_all(st: &AppState, r: &RolloutRecord) {
    let actor = format!("rollout:{}", r.id);
    if let Err(e) = crate::notify::issue(
        &st.notifier,
        &st.store,
        &actor,
        vec![Category::Programs],
        st.clock.now(),
    )
    .await
    {
        tracing::warn!(rollout = r.id, error = %e, "cannot notify the fleet");
    }
}

/// One look at every rolling rollout: halt those with too many failing clients, promote
/// those whose soak is over. Returns how many changed.
///
/// # Errors
/// Database errors.
pub async fn evaluate(st: &AppState) -> Result<usize, ApiError> {
    let rolling: Vec<RolloutRecord> = st
        .store
        .governing_rollouts()
        .await?
        .into_iter()
        .filter(|r| r.state == RolloutState::Rolling)
        .collect();
    if rolling.is_empty() {
        return Ok(0);
    }
    let clients = st.store.clients().await?;
    let now = st.clock.now();
    let mut changed = 0;
    for r in &rolling {
        let Some(change) = decide(st, r, &clients, now).await? else {
            continue;
        };
        let Some(done) = st.store.change_rollout(r.id, r.revision, &change).await? else {
            continue;
        };
        changed += 1;
        audit_auto(st, &done).await?;
        if done.state == RolloutState::Rolling {
            notify_ring(st, &done, &clients).await;
        }
    }
    Ok(changed)
}

/// What rolling rollout `r` becomes now, if anything: halted with too many failing clients,
/// promoted when its ring's soak is over (and its version is published).
async fn decide(
    st: &AppState,
    r: &RolloutRecord,
    clients: &[ClientRecord],
    now: i64,
) -> Result<Option<RolloutChange>, ApiError> {
    let Some(ring) = r.rings.get(r.ring) else {
        return Ok(None);
    };
    let failing: Vec<String> = count(r, clients, r.ring_started_at)
        .into_iter()
        .flat_map(|c| c.failing)
        .collect();
    if failing.len() as u64 > ring.max_failures {
        let shown: Vec<&str> = failing.iter().take(5).map(String::as_str).collect();
        return Ok(Some(RolloutChange {
            state: RolloutState::Halted,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason: Some(format!(
                "halted automatically in ring {} (`{}`): {} failing clients, at most {} tolerated ({}{})",
                r.ring + 1,
                ring.name,
                failing.len(),
                ring.max_failures,
                shown.join(", "),
                if failing.len() > shown.len() { ", …" } else { "" }
            )),
        }));
    }
    let soak = i64::try_from(ring.soak_secs).unwrap_or(i64::MAX);
    if now < r.ring_started_at.saturating_add(soak) {
        return Ok(None);
    }
    if !published(st, r).await {
        // Not uploaded yet: the soak counts from when it is (no revision change: no client's
        // pin changes).
        if r.ring_started_at < now {
            st.store.restart_soak(r.id, r.revision, now).await?;
        }
        return Ok(None);
    }
    Ok(Some(promotion(
        r,
        now,
        Some(format!(
            "ring {} (`{}`) soaked {} s with {} failing clients",
            r.ring + 1,
            ring.name,
            ring.soak_secs,
            failing.len()
        )),
    )))
}

/// The audit record of an automatic change (actor [`AUTO_ACTOR`]).
async fn audit_auto(st: &AppState, done: &RolloutRecord) -> Result<(), ApiError> {
    let what = match done.state {
        RolloutState::Halted => "halt",
        RolloutState::Completed => "complete",
        _ => "promote",
    };
    tracing::info!(rollout = done.id, state = %done.state, ring = done.ring + 1, reason = ?done.reason, "rollout changed automatically");
    let after = serde_json::json!({
        "rollout": done.id,
        "program": done.program,
        "version": done.version,
        "state": done.state,
        "ring": done.ring + 1,
        "reason": done.reason,
    });
    let path = format!("/api/rollouts/{}/{what}", done.id);
    st.store
        .append_audit(&NewAudit {
            actor: AUTO_ACTOR,
            source: "-",
            method: "AUTO",
            path: &path,
            status: 200,
            before: None,
            after: Some(after.to_string()),
        })
        .await?;
    Ok(())
}

/// Whether `r`'s version is published in the server's site repository (a linked site is
/// taken as published: the server cannot tell).
async fn published(st: &AppState, r: &RolloutRecord) -> bool {
    let Ok(site) = st.site.publisher() else {
        return true;
    };
    site.listed(Category::Programs).await.is_ok_and(|l| {
        l.iter()
            .any(|t| t.path.name() == r.program && t.path.version() == r.version)
    })
}

/// Looks at rolling rollouts every [`TICK`] until the server stops.
pub async fn run_on_schedule(st: AppState) {
    let mut stop = st.shutdown.subscribe();
    loop {
        if let Err(e) = evaluate(&st).await {
            tracing::warn!(error = %e, "rollout check failed");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn client(id: &str, name: &str, ip: &str) -> ClientRecord {
        ClientRecord {
            id: id.into(),
            name: name.into(),
            domain: None,
            agent_address: None,
            enrolled_at: 0,
            enrolled_from: "127.0.0.1".into(),
            last_seen: None,
            reported_ip: Some(ip.into()),
            peer_ip: None,
            installed: BTreeMap::new(),
            last_outcome: None,
            last_update: None,
            relay: None,
            agent_approved_at: None,
            agent_version: None,
        }
    }

    fn rollout(state: RolloutState, ring: usize, previous: Option<&str>) -> RolloutRecord {
        RolloutRecord {
            id: 1,
            program: "app".into(),
            version: "2".into(),
            previous_version: previous.map(str::to_owned),
            rings: vec![
                RingSpec {
                    name: "named".into(),
                    clients: vec!["pc-1".into()],
                    ..RingSpec::default()
                },
                RingSpec {
                    name: "range".into(),
                    ip_ranges: vec!["10.0.0.0/24".into()],
                    ..RingSpec::default()
                },
            ],
            state,
            ring,
            ring_started_at: 0,
            reason: None,
            created_at: 0,
            created_by: "user:admin".into(),
            updated_at: 0,
            revision: 1,
        }
    }

    // A client's place in the fleet is stable, and a smaller share is inside a larger one.
    #[test]
    fn percentages_are_stable_and_nested() {
        let ids: Vec<String> = (0..2000).map(|i| format!("{i:016x}")).collect();
        let share = |p: f64| -> Vec<&String> {
            ids.iter()
                .filter(|id| f64::from(bucket(id)) < p * 10_000.0)
                .collect()
        };
        let (one, ten) = (share(1.0), share(10.0));
        assert!(one.iter().all(|id| ten.contains(id)));
        assert!((5..=40).contains(&one.len()), "{}", one.len());
        assert!((120..=280).contains(&ten.len()), "{}", ten.len());
        assert_eq!(bucket("abc"), bucket("abc"));
        assert_eq!(share(100.0).len(), ids.len());
    }

    // Pins by state: reached rings get the version, the rest the previous one (or none);
    // completed pins nothing; rolled back pins the previous version for everyone.
    #[test]
    fn pins_follow_the_state() {
        let named = client("a", "pc-1", "192.168.0.1");
        let ranged = client("b", "pc-2", "10.0.0.9");
        let outside = client("c", "pc-3", "192.168.0.2");
        let pin = |r: &RolloutRecord, c: &ClientRecord| pins_for(std::slice::from_ref(r), c);
        let one = rollout(RolloutState::Rolling, 0, Some("1"));
        assert_eq!(pin(&one, &named)["app"].as_deref(), Some("2"));
        assert_eq!(pin(&one, &ranged)["app"].as_deref(), Some("1"));
        let halted = rollout(RolloutState::Halted, 1, Some("1"));
        assert_eq!(pin(&halted, &ranged)["app"].as_deref(), Some("2"));
        assert_eq!(pin(&halted, &outside)["app"].as_deref(), Some("1"));
        let first = rollout(RolloutState::Rolling, 0, None);
        assert_eq!(pin(&first, &outside)["app"], None, "nothing to keep: none");
        assert!(pin(&rollout(RolloutState::Completed, 1, Some("1")), &outside).is_empty());
        let back = rollout(RolloutState::RolledBack, 1, Some("1"));
        assert_eq!(pin(&back, &named)["app"].as_deref(), Some("1"));
    }
}
