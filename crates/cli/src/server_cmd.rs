//! `cascade server` (run the server until SIGINT/SIGTERM) and the subcommands that talk to a
//! running server's admin API: `sources list|add|edit|rm|move`, `notify`, `clients`,
//! `agents` and `policy export|apply`. The server URL comes from `--server`, `CASCADE_SERVER`
//! or the config file; the admin token from `CASCADE_TOKEN` or the config file
//! (`$CASCADE_CONFIG`, else `$XDG_CONFIG_HOME/cascade/cli.toml`, else
//! `~/.config/cascade/cli.toml`, with `server = "…"` and `token = "…"`). Refusals of bad input
//! (4xx) exit with status 2 and print the server's code, field and message.
//!
//! One module a command group: [`serve`] (`cascade server`), [`sources`], [`policy`],
//! [`fleet`] (`notify`, `clients`, `health`, `compliance`), [`agents`] and [`users`] (`users`,
//! `tokens`); [`api`] holds what they share (the connection, the admin client, printing).

mod agents;
mod api;
mod fleet;
mod policy;
mod serve;
mod sources;
mod users;

pub use agents::{run_agents, AgentsCmd};
pub(crate) use api::{admin, ask, failed, print_json, runtime, table};
pub use api::{Conn, Revision};
pub use fleet::{run_clients, run_compliance, run_health, run_notify, ClientsArgs, NotifyArgs};
pub use policy::{run_policy_remote, PolicyRemote};
pub use serve::{run_server, ServerArgs};
pub use sources::{run_sources_remote, SourcesRemote};
pub use users::{run_tokens, run_users, TokensCmd, UsersCmd};
