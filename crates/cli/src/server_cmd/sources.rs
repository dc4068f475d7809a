//! `cascade sources list|add|edit|rm|move` over the admin API: the server's ordered source
//! list, printed as a table (or `--json`).

use cascade_client::proto::{DeleteSources, MoveSource, SourceBody, SourcesResponse};
use clap::{Args, Subcommand, ValueEnum};

use super::api::{ask, or_dash, print_json, runtime, table, Conn, Revision};

/// `cascade sources …` subcommands over the API (merge into the local `sources` group with
/// `#[command(flatten)]`).
#[derive(Debug, Subcommand)]
pub enum SourcesRemote {
    /// List the server's source list, in order.
    List(Conn),
    /// Append an entry: `--range R` and exactly one of `--agent IP:PORT` or `--url URL`.
    Add {
        #[command(flatten)]
        entry: EntryArgs,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace entry ID's range and source, keeping its place.
    Edit {
        /// The entry id (see `sources list`).
        id: u32,
        #[command(flatten)]
        entry: EntryArgs,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete the given entries (all or nothing).
    Rm {
        /// Entry ids.
        #[arg(required = true)]
        ids: Vec<u32>,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move entry ID one place up or down.
    Move {
        /// The entry id.
        id: u32,
        /// `up` or `down`.
        #[arg(value_enum)]
        direction: Direction,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A source-list entry on the command line.
#[derive(Debug, Clone, Args)]
pub struct EntryArgs {
    /// Client range: CIDR, `a.b.c.d-e.f.g.h` or one address.
    #[arg(long)]
    pub range: String,
    /// A registered update agent's `IP:PORT`.
    #[arg(long, conflicts_with = "url")]
    pub agent: Option<String>,
    /// A URL source.
    #[arg(long)]
    pub url: Option<String>,
}

/// Which way to move an entry.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Direction {
    /// One place towards the top.
    Up,
    /// One place towards the bottom.
    Down,
}

fn print_sources(v: &SourcesResponse) {
    let mut t = table(&["#", "id", "range", "source"]);
    for (i, e) in v.sources.iter().enumerate() {
        let src = match (&e.agent, &e.url) {
            (Some(agent), _) => format!("agent:{agent}"),
            (None, url) => format!("url:{}", or_dash(url.as_deref())),
        };
        t.add_row(vec![
            (i + 1).to_string(),
            or_dash(e.id),
            e.range.clone(),
            src,
        ]);
    }
    println!("{t}\nrevision {}", v.revision);
}

fn entry_body(e: &EntryArgs) -> SourceBody {
    SourceBody {
        range: e.range.clone(),
        agent: e.agent.clone(),
        url: e.url.clone(),
    }
}

/// Runs `cascade sources list|add|edit|rm|move`.
pub fn run_sources_remote(cmd: SourcesRemote) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (conn, v) = match cmd {
            SourcesRemote::List(conn) => {
                let v = ask(&conn, "GET /api/sources", |api| async move {
                    api.sources().await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Add { entry, at, conn } => {
                let body = entry_body(&entry);
                let v = ask(&conn, "POST /api/sources", |api| async move {
                    api.add_source(&body, at.revision).await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Edit {
                id,
                entry,
                at,
                conn,
            } => {
                let body = entry_body(&entry);
                let what = format!("PUT /api/sources/{id}");
                let v = ask(&conn, &what, |api| async move {
                    api.edit_source(id, &body, at.revision).await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Rm { ids, at, conn } => {
                let body = DeleteSources { ids };
                let v = ask(&conn, "POST /api/sources/delete", |api| async move {
                    api.delete_sources(&body, at.revision).await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Move {
                id,
                direction,
                at,
                conn,
            } => {
                let body = MoveSource {
                    direction: match direction {
                        Direction::Up => cascade_client::proto::Direction::Up,
                        Direction::Down => cascade_client::proto::Direction::Down,
                    },
                };
                let what = format!("POST /api/sources/{id}/move");
                let v = ask(&conn, &what, |api| async move {
                    api.move_source(id, &body, at.revision).await
                })
                .await?;
                (conn, v)
            }
        };
        if conn.json {
            print_json(&v);
        } else {
            print_sources(&v);
        }
        Ok(())
    })
}
