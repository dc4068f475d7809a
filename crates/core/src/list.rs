//! The customized update source list, its entries (a range and where it sends its clients),
//! and the console's operations on it: add (appended at
//! the end), edit by id, delete the checked ids, move one entry up or down one place. Each
//! returns a new list or an error; the list it was called on never changes.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::PolicyError;
use crate::range::IpRange;

/// Where a source-list entry sends its clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntrySource {
    /// A registered update agent.
    Agent(SocketAddr),
    /// Any HTTP(S) server holding a copy of the repository.
    Url(Url),
}

impl fmt::Display for EntrySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntrySource::Agent(a) => write!(f, "agent:{a}"),
            EntrySource::Url(u) => write!(f, "url:{u}"),
        }
    }
}

/// A stable identifier of a source-list entry; it survives edits and moves.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct EntryId(pub u32);

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One row of the customized update source list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Stable id (the checkbox value in the console).
    pub id: EntryId,
    /// The client addresses this entry applies to.
    pub range: IpRange,
    /// Where those clients update from.
    pub source: EntrySource,
}

/// The ordered list. Order is meaning: the first matching entry is tried first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceList(Vec<SourceEntry>);

impl SourceList {
    /// A list of the given entries, in order (ids are checked by `Policy::validate`).
    pub fn new(entries: Vec<SourceEntry>) -> Self {
        SourceList(entries)
    }

    /// The entries, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, SourceEntry> {
        self.0.iter()
    }

    /// The entries as a slice.
    pub fn as_slice(&self) -> &[SourceEntry] {
        &self.0
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry with `id` and its position.
    pub fn get(&self, id: EntryId) -> Option<(usize, &SourceEntry)> {
        self.0.iter().enumerate().find(|(_, e)| e.id == id)
    }

    fn position(&self, id: EntryId) -> Result<usize, PolicyError> {
        self.get(id)
            .map(|(i, _)| i)
            .ok_or(PolicyError::UnknownEntry { id: id.0 })
    }

    /// The id the next added entry gets: one more than the largest id in the list.
    pub fn next_id(&self) -> EntryId {
        EntryId(
            self.0
                .iter()
                .map(|e| e.id.0)
                .max()
                .unwrap_or(0)
                .saturating_add(1),
        )
    }

    /// Appends a new entry at the end ("Add", then "Save") and returns the list and its id.
    #[must_use]
    pub fn add(&self, range: IpRange, source: EntrySource) -> (SourceList, EntryId) {
        let id = self.next_id();
        let mut next = self.0.clone();
        next.push(SourceEntry { id, range, source });
        (SourceList(next), id)
    }

    /// Replaces the range and source of entry `id`, keeping its place and id.
    ///
    /// # Errors
    /// [`PolicyError::UnknownEntry`] when no entry has that id.
    pub fn edit(
        &self,
        id: EntryId,
        range: IpRange,
        source: EntrySource,
    ) -> Result<SourceList, PolicyError> {
        let i = self.position(id)?;
        let mut next = self.0.clone();
        next[i] = SourceEntry { id, range, source };
        Ok(SourceList(next))
    }

    /// Removes every checked entry; the rest keep their order.
    ///
    /// # Errors
    /// [`PolicyError::NothingSelected`] for an empty set, [`PolicyError::UnknownEntry`] when
    /// any id is not in the list (then nothing is removed).
    pub fn delete(&self, ids: &BTreeSet<EntryId>) -> Result<SourceList, PolicyError> {
        if ids.is_empty() {
            return Err(PolicyError::NothingSelected);
        }
        for id in ids {
            self.position(*id)?;
        }
        Ok(SourceList(
            self.0
                .iter()
                .filter(|e| !ids.contains(&e.id))
                .cloned()
                .collect(),
        ))
    }

    /// Moves entry `id` one place towards the top.
    ///
    /// # Errors
    /// Unknown id, or the entry is already first.
    pub fn move_up(&self, id: EntryId) -> Result<SourceList, PolicyError> {
        let i = self.position(id)?;
        if i == 0 {
            return Err(PolicyError::CannotMove {
                id: id.0,
                edge: "first",
                direction: "up",
            });
        }
        let mut next = self.0.clone();
        next.swap(i - 1, i);
        Ok(SourceList(next))
    }

    /// Moves entry `id` one place towards the bottom.
    ///
    /// # Errors
    /// Unknown id, or the entry is already last.
    pub fn move_down(&self, id: EntryId) -> Result<SourceList, PolicyError> {
        let i = self.position(id)?;
        if i + 1 == self.0.len() {
            return Err(PolicyError::CannotMove {
                id: id.0,
                edge: "last",
                direction: "down",
            });
        }
        let mut next = self.0.clone();
        next.swap(i, i + 1);
        Ok(SourceList(next))
    }
}

impl<'a> IntoIterator for &'a SourceList {
    type Item = &'a SourceEntry;
    type IntoIter = std::slice::Iter<'a, SourceEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
