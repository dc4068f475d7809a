//! Delegated targets: which roles a delegation trusts for a target path (path patterns matched
//! per `/`-separated segment with shell-style `*`, `?` and `[...]`, as python-tuf's
//! `fnmatch` per segment does, or SHA-256 path hash prefixes), and the search for a target:
//! pre-order depth-first from `targets`, roles loaded lazily and only when the search reaches
//! them, a terminating delegation ending the search of its siblings, a visited set and a bound
//! on the roles visited (`docs/architecture.md#trust-model`).

use tough::schema::{Delegations, PathSet};

use super::schema::TargetFile;
use super::set::TrustedSet;
use super::updater::{MetaStore, Updater};
use super::TufError;

/// Whether `path` matches shell-style `pattern` segment by segment: the same number of `/`
/// separated segments, each matched with `*` (any run), `?` (one character) and `[...]`
/// classes (`[!...]` negated, `a-z` ranges), case-sensitively; a wildcard never matches `/`.
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    let (pat, segs): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pat.len() == segs.len()
        && pat.iter().zip(&segs).all(|(p, s)| {
            let p: Vec<char> = p.chars().collect();
            let s: Vec<char> = s.chars().collect();
            fnmatch(&p, &s)
        })
}

/// `fnmatch.fnmatchcase` of one segment, with backtracking over the last `*`.
fn fnmatch(pat: &[char], s: &[char]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        let step = match pat.get(p) {
            Some('*') => {
                star = Some((p, i));
                p += 1;
                continue;
            }
            Some('?') => Some(p + 1),
            Some('[') => match class(pat, p, s[i]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (s[i] == '[').then_some(p + 1),
            },
            Some(c) => (*c == s[i]).then_some(p + 1),
            None => None,
        };
        if let Some(next) = step {
            p = next;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

/// Match `c` against the class starting at `pat[open] == '['`: whether it matched and the index
/// after the class, or `None` when the class is not closed (then `[` is literal).
fn class(pat: &[char], open: usize, c: char) -> Option<(bool, usize)> {
    let mut j = open + 1;
    let negate = pat.get(j) == Some(&'!');
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let cur = *pat.get(j)?;
        if cur == ']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        match (pat.get(j + 1), pat.get(j + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                matched |= cur <= c && c <= hi;
                j += 3;
            }
            _ => {
                matched |= cur == c;
                j += 1;
            }
        }
    }
}

/// Whether a delegation with `paths` trusts its role for `target`.
pub(crate) fn is_delegated(paths: &PathSet, target: &str) -> bool {
    match paths {
        PathSet::Paths(patterns) => patterns.iter().any(|p| path_matches(p.value(), target)),
        PathSet::PathHashPrefixes(prefixes) => {
            let digest = crate::fsutil::sha256_hex(target.as_bytes());
            prefixes.iter().any(|p| digest.starts_with(p.value()))
        }
    }
}

/// The roles `delegations` trusts for `target`, in order, each with whether it terminates the
/// search; the list ends at the first terminating one.
fn roles_for(delegations: &Delegations, target: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for role in &delegations.roles {
        if is_delegated(&role.paths, target) {
            out.push((role.name.clone(), role.terminating));
            if role.terminating {
                break;
            }
        }
    }
    out
}

impl<T: tough::Transport + ?Sized, S: MetaStore> Updater<'_, T, S> {
    /// Find `target` in the trusted targets roles, loading delegated roles as the search
    /// reaches them. `Ok(None)` when no role the search may visit lists it.
    ///
    /// # Errors
    /// Why a role on the search path could not be loaded or verified.
    pub async fn find_target(&mut self, target: &str) -> Result<Option<TargetFile>, TufError> {
        if self.trusted().top_targets().is_none() {
            self.refresh().await?;
        }
        let mut to_visit = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = std::collections::BTreeSet::new();
        let mut budget = self.limits().max_delegations;
        while budget > 0 {
            let Some((role, delegator)) = to_visit.pop() else {
                break;
            };
            if visited.contains(&role) {
                continue;
            }
            self.load_targets(&role, &delegator).await?;
            let Some(meta) = self.trusted().targets_role(&role).map(|v| &v.meta) else {
                break;
            };
            if let Some(found) = meta.targets.get(target) {
                return Ok(Some(found.clone()));
            }
            let children = meta
                .delegations
                .as_ref()
                .map(|d| roles_for(d, target))
                .unwrap_or_default();
            visited.insert(role.clone());
            budget -= 1;
            if children.last().is_some_and(|(_, terminating)| *terminating) {
                to_visit.clear();
            }
            to_visit.extend(children.into_iter().rev().map(|(c, _)| (c, role.clone())));
        }
        Ok(None)
    }
}

/// A delegated role the client could not trust (its targets are not listed), with the path
/// patterns it was delegated and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRole {
    /// The role.
    pub role: String,
    /// The patterns delegated to it (empty when it was delegated path hash prefixes, which
    /// may cover any path).
    pub paths: Vec<String>,
    /// Why it was refused.
    pub error: TufError,
}

impl RefusedRole {
    /// Whether it may have been trusted for targets of `category` (the first segment of a
    /// target name).
    pub fn may_cover(&self, category: &str) -> bool {
        self.paths.is_empty()
            || self.paths.iter().any(|p| {
                let first = p.split('/').next().unwrap_or_default();
                path_matches(first, category)
            })
    }
}

/// The patterns of delegated role `role` in `delegator`'s delegations (empty for hash
/// prefixes or when not found).
fn patterns_of(set: &TrustedSet, delegator: &str, role: &str) -> Vec<String> {
    set.targets_role(delegator)
        .and_then(|v| v.meta.delegations.as_ref())
        .and_then(|d| d.roles.iter().find(|r| r.name == role))
        .map(|r| match &r.paths {
            PathSet::Paths(p) => p.iter().map(|p| p.value().to_owned()).collect(),
            PathSet::PathHashPrefixes(_) => Vec::new(),
        })
        .unwrap_or_default()
}

impl<T: tough::Transport + ?Sized, S: MetaStore> Updater<'_, T, S> {
    /// Load every delegated role the trusted targets roles reach, pre-order depth-first from
    /// `targets` (within [`super::Limits::max_delegations`] roles), so that every target can
    /// be listed ([`TrustedSet::resolved_targets`]). A role the snapshot does not list has
    /// published nothing yet and is passed over. Each role that failed to load (bad
    /// signature, wrong version, expired, unreachable) with why; its targets are not trusted.
    ///
    /// # Errors
    /// Only when the top-level metadata is not loaded and cannot be.
    pub async fn load_delegated(&mut self) -> Result<(), TufError> {
        if self.trusted().top_targets().is_none() {
            self.refresh().await?;
        }
        let mut failed = Vec::new();
        let mut to_visit = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = std::collections::BTreeSet::new();
        let mut budget = self.limits().max_delegations;
        while let Some((role, delegator)) = to_visit.pop() {
            if budget == 0 {
                break;
            }
            if !visited.insert(role.clone()) {
                continue;
            }
            budget -= 1;
            if role != "targets" {
                let refuse = |error: TufError| RefusedRole {
                    paths: patterns_of(self.trusted(), &delegator, &role),
                    role: role.clone(),
                    error,
                };
                if ["root", "timestamp", "snapshot", "targets"].contains(&role.as_str()) {
                    failed.push(refuse(TufError::malformed(
                        &delegator,
                        "it delegates to a top-level role's name",
                    )));
                    continue;
                }
                let listed = self
                    .trusted()
                    .final_snapshot()?
                    .meta
                    .contains_key(&format!("{role}.json"));
                if !listed {
                    continue;
                }
                if let Err(e) = self.load_targets(&role, &delegator).await {
                    let refused = RefusedRole {
                        paths: patterns_of(self.trusted(), &delegator, &role),
                        role: role.clone(),
                        error: e,
                    };
                    failed.push(refused);
                    continue;
                }
            }
            let children: Vec<String> = self
                .trusted()
                .targets_role(&role)
                .and_then(|v| v.meta.delegations.as_ref())
                .map(|d| d.roles.iter().map(|r| r.name.clone()).collect())
                .unwrap_or_default();
            to_visit.extend(children.into_iter().rev().map(|c| (c, role.clone())));
        }
        self.set_mut().refused_delegations = failed;
        Ok(())
    }
}

impl TrustedSet {
    /// Every target the loaded targets roles list, each taken from the role the
    /// specification's search would find it in: pre-order depth-first from `targets`, a role
    /// consulted only through a delegation whose paths match the target (and only as loaded
    /// through that delegator), a terminating delegation ending the search. A target a role
    /// lists outside the paths delegated to it is not trusted, so not returned. In name order.
    pub fn resolved_targets(&self) -> Vec<(String, TargetFile)> {
        let names: std::collections::BTreeSet<&String> = self
            .targets
            .values()
            .flat_map(|v| v.meta.targets.keys())
            .collect();
        names
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.resolve_loaded(name)?)))
            .collect()
    }

    /// The search of `find_target` over the roles already loaded.
    fn resolve_loaded(&self, target: &str) -> Option<TargetFile> {
        let mut to_visit = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = std::collections::BTreeSet::new();
        while let Some((role, delegator)) = to_visit.pop() {
            if !visited.insert(role.clone()) {
                continue;
            }
            if role != "targets" && !self.has_targets_via(&role, &delegator) {
                continue;
            }
            let meta = &self.targets_role(&role)?.meta;
            if let Some(found) = meta.targets.get(target) {
                return Some(found.clone());
            }
            let children = meta
                .delegations
                .as_ref()
                .map(|d| roles_for(d, target))
                .unwrap_or_default();
            if children.last().is_some_and(|(_, terminating)| *terminating) {
                to_visit.clear();
            }
            to_visit.extend(children.into_iter().rev().map(|(c, _)| (c, role.clone())));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    // Patterns match per segment as python-tuf does: wildcards stay inside a segment,
    // `?` is one character, classes work, matching is case-sensitive.
    #[test]
    fn patterns_match_per_segment() {
        for (pat, path, want) in [
            ("*.md", "README.md", true),
            ("*.md", "releases/README.md", false),
            ("releases/*/*", "releases/x/x_v1", true),
            ("releases/x/*", "releases/y/y_v1.zip", false),
            ("foo-?.tgz", "foo-1.tgz", true),
            ("foo-?.tgz", "foo-alpha.tgz", false),
            ("*.md", "README.MD", false),
            ("*", "a", true),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("[ab]?", "bz", true),
            ("[!ab]?", "bz", false),
            ("[a-c]x", "cx", true),
            ("[]]x", "]x", true),
            ("[x", "[x", true),
            ("targets/*.tgz", "targets/foo.tgz", true),
        ] {
            assert_eq!(path_matches(pat, path), want, "{pat} vs {path}");
        }
    }
}
