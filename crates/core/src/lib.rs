//! cascade's core: the pure model every other crate shares. It owns IP ranges, the policy
//! (`docs/architecture.md#policy`) with its TOML form and validation, the customized
//! source-list operations (add, edit, delete, move one place), domain settings, and `resolve`, the function
//! that turns a policy, a client IP and a category into the ordered plan of sources
//! (`docs/architecture.md#resolution`).
//! Nothing here does I/O or is async.

pub mod category;
pub mod doc;
pub mod error;
pub mod index;
pub mod limits;
pub mod list;
pub mod policy;
pub mod range;
pub mod report;
pub mod resolve;
pub mod settings;
pub mod trust;

pub use category::Category;
pub use doc::{AgentDoc, EntryDoc, PolicyDoc};
pub use error::PolicyError;
pub use index::Resolver;
pub use list::{EntryId, EntrySource, SourceEntry, SourceList};
pub use policy::{
    ActiveUpdateFallback, Agent, AgentSource, AgentsSettings, Domain, Fallback, Mode, Policy,
    PrivilegeOverrides, Privileges,
};
pub use range::{IpRange, RangeError};
pub use resolve::{resolve, resolve_for_agent, Plan, Step, StepSource};
pub use settings::{DomainSettings, PublishedSettings, UpdateWindow};
pub use trust::TrustDomain;
