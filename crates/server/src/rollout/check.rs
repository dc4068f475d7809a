//! Checks a new rollout before it is stored: program and versions valid target names, 1 to
//! [`MAX_RINGS`] rings with unique names, each selecting someone, its entries and IP ranges
//! valid. A refusal is a 400 naming the first bad field (rings and entries 1-based).

use std::collections::HashSet;

use cascade_core::{Category, IpRange};
use cascade_proto::{NewRollout, RingSpec};

use super::{MAX_RINGS, MAX_RING_ENTRIES};
use crate::error::ApiError;

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
