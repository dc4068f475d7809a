//! The SQL store: SQLite in the data directory by default (WAL mode), PostgreSQL for a
//! `postgres://` URL. One `sqlx::AnyPool` over either, runtime queries only, `$n`
//! placeholders (both backends accept them) and the same checked-in migrations.

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::ServerError;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The connection pool and its backend.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool.
    pub pool: AnyPool,
    /// The backend.
    pub backend: Backend,
}

/// Opens (creating if needed) the database and applies the migrations.
///
/// # Errors
/// A URL that is neither SQLite nor PostgreSQL, a database that cannot be opened, or a
/// failed migration.
pub async fn open(data_dir: &Path, url: Option<&str>) -> Result<Db, ServerError> {
    sqlx::any::install_default_drivers();
    let (url, backend) = match url {
        None => {
            std::fs::create_dir_all(data_dir).map_err(|e| ServerError::Io {
                path: data_dir.display().to_string(),
                source: e,
            })?;
            let path = data_dir.join("cascade.db");
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                Backend::Sqlite,
            )
        }
        Some(u) if u.starts_with("sqlite:") => (u.to_owned(), Backend::Sqlite),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            (u.to_owned(), Backend::Postgres)
        }
        Some(u) => {
            let scheme = u.split(':').next().unwrap_or_default();
            return Err(ServerError::DatabaseUrl(scheme.to_owned()));
        }
    };
    let max = if backend == Backend::Sqlite { 4 } else { 10 };
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        .connect(&url)
        .await?;
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
    }
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(Db { pool, backend })
}
