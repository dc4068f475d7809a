//! `cascade users …` (named users and their roles, admin only) and `cascade tokens …` (API
//! tokens) over the admin API. Passwords are read from standard input, never the command line.

use anyhow::Context as _;
use cascade_client::proto::{NewToken, NewUser, UserPatch, UserRole};
use clap::Subcommand;

use super::api::{ask, or_dash, print_json, runtime, table, Conn};
use crate::BadInput;

/// `cascade users …`: named users and their roles (admin only).
#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// List users and their roles.
    List(Conn),
    /// Make a user; the password is read from standard input (one line).
    Add {
        /// The user name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// `viewer` (read), `operator` (read, notify, what-if) or `admin`.
        #[arg(long, value_parser = parse_role)]
        role: UserRole,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a user's role.
    SetRole {
        /// The user name.
        name: String,
        /// The new role.
        #[arg(value_parser = parse_role)]
        role: UserRole,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a user's password, read from standard input (one line).
    Passwd {
        /// The user name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a user and revoke its tokens.
    Rm {
        /// The user name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `cascade tokens …`: API tokens (the caller's own; an admin's, everyone's).
#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// List API tokens.
    List(Conn),
    /// Make an API token; it is printed once.
    Create {
        /// What it is for.
        #[arg(long)]
        label: String,
        /// The user it acts as (admin only; default: yourself).
        #[arg(long)]
        user: Option<String>,
        /// Seconds until it expires (default: never).
        #[arg(long)]
        expires_in: Option<i64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke an API token at once.
    Revoke {
        /// The token's id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

fn parse_role(s: &str) -> Result<UserRole, String> {
    UserRole::parse(s).ok_or_else(|| format!("`{s}` is not a role (viewer, operator, admin)"))
}

/// One line of standard input: the password.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(BadInput("password: none given on standard input".into()).into());
    }
    Ok(password)
}

fn print_user(json: bool, v: &cascade_client::proto::UserView) {
    if json {
        print_json(v);
    } else {
        println!("ok: user {} ({})", v.name, v.role.as_str());
    }
}

/// Runs `cascade users list|add|set-role|passwd|rm`.
pub fn run_users(cmd: UsersCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            UsersCmd::List(conn) => {
                let v = ask(
                    &conn,
                    "GET /api/users",
                    |api| async move { api.users().await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let mut t = table(&["name", "role", "created"]);
                for u in &v.users {
                    t.add_row(vec![
                        u.name.clone(),
                        u.role.as_str().to_owned(),
                        u.created_at.to_string(),
                    ]);
                }
                println!("{t}");
            }
            UsersCmd::Add { name, role, conn } => {
                let body = NewUser {
                    name,
                    role,
                    password: read_password()?,
                };
                let v = ask(&conn, "POST /api/users", |api| async move {
                    api.create_user(&body).await
                })
                .await?;
                print_user(conn.json, &v);
            }
            UsersCmd::SetRole { name, role, conn } => {
                let what = format!("PATCH /api/users/{name}");
                let body = UserPatch {
                    role: Some(role),
                    password: None,
                };
                let v = ask(&conn, &what, |api| async move {
                    api.patch_user(&name, &body).await
                })
                .await?;
                print_user(conn.json, &v);
            }
            UsersCmd::Passwd { name, conn } => {
                let what = format!("PATCH /api/users/{name}");
                let body = UserPatch {
                    role: None,
                    password: Some(read_password()?),
                };
                let v = ask(&conn, &what, |api| async move {
                    api.patch_user(&name, &body).await
                })
                .await?;
                print_user(conn.json, &v);
            }
            UsersCmd::Rm { name, conn } => {
                let what = format!("DELETE /api/users/{name}");
                let v = ask(
                    &conn,
                    &what,
                    |api| async move { api.delete_user(&name).await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: user {} deleted, its tokens revoked", v.deleted);
                }
            }
        }
        Ok(())
    })
}

/// Runs `cascade tokens list|create|revoke`.
pub fn run_tokens(cmd: TokensCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            TokensCmd::List(conn) => {
                let v = ask(
                    &conn,
                    "GET /api/tokens",
                    |api| async move { api.tokens().await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let mut t = table(&["id", "user", "label", "created", "expires", "revoked"]);
                for k in &v.tokens {
                    t.add_row(vec![
                        k.id.clone(),
                        k.user.clone(),
                        k.label.clone(),
                        k.created_at.to_string(),
                        or_dash(k.expires_at),
                        or_dash(k.revoked_at),
                    ]);
                }
                println!("{t}");
            }
            TokensCmd::Create {
                label,
                user,
                expires_in,
                conn,
            } => {
                let body = NewToken {
                    label,
                    user,
                    expires_in_secs: expires_in,
                };
                let v = ask(&conn, "POST /api/tokens", |api| async move {
                    api.create_token(&body).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!(
                        "token {} for {} (shown once):\n{}",
                        v.info.id, v.info.user, v.token
                    );
                }
            }
            TokensCmd::Revoke { id, conn } => {
                let what = format!("DELETE /api/tokens/{id}");
                let v = ask(
                    &conn,
                    &what,
                    |api| async move { api.revoke_token(&id).await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: token {} revoked", v.revoked);
                }
            }
        }
        Ok(())
    })
}
