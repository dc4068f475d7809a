//! The clients search index (`docs/operating.md#clients-list`): a substring of a client's
//! name, IP, domain or installed versions found through a trigram index instead of a scan of
//! every row. SQLite: an FTS5 table with the `trigram` tokenizer (`client_search`, its rowid
//! the client row's), kept by triggers on `clients`; PostgreSQL: a `pg_trgm` GIN index on the
//! searched text. Both are made by the server, not by a migration (they differ by database),
//! and filled in the background a batch at a time (`crate::backfill`); until one is complete
//! (`client_search_ready`, `migrations/0017_console_search.sql`) searches scan as before.

use std::sync::atomic::{AtomicU8, Ordering};

use sqlx::Row;

use super::{Store, StoreError};

/// Which search index the clients list may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchIndex {
    /// None (yet): a scan with `LIKE` over each column.
    #[default]
    Scan,
    /// SQLite's FTS5 trigram table.
    SqliteTrigram,
    /// PostgreSQL's `pg_trgm` index on `PG_TEXT`.
    PostgresTrigram,
}

/// The searched text on PostgreSQL, exactly as indexed (the planner matches the expression):
/// the columns lowercased, one per line, so a search cannot match across two of them.
pub(super) const PG_TEXT: &str = "LOWER(name || chr(10) || COALESCE(reported_ip, '') || chr(10) \
     || COALESCE(peer_ip, '') || chr(10) || COALESCE(domain, '') || chr(10) || installed)";

/// The index in use, shared by the store's clones.
#[derive(Debug, Default)]
pub(super) struct Ready(AtomicU8);

impl Ready {
    fn get(&self) -> SearchIndex {
        match self.0.load(Ordering::Acquire) {
            1 => SearchIndex::SqliteTrigram,
            2 => SearchIndex::PostgresTrigram,
            _ => SearchIndex::Scan,
        }
    }

    fn set(&self, index: SearchIndex) {
        let n = match index {
            SearchIndex::Scan => 0,
            SearchIndex::SqliteTrigram => 1,
            SearchIndex::PostgresTrigram => 2,
        };
        self.0.store(n, Ordering::Release);
    }
}

/// The FTS5 table and the triggers that keep it, on SQLite. An update re-indexes a client
/// only when a searched column changed (a check-in usually changes none of them).
const SQLITE_DDL: [&str; 4] = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS client_search USING fts5(name, reported_ip, peer_ip, \
     domain, installed, tokenize = 'trigram')",
    "CREATE TRIGGER IF NOT EXISTS client_search_insert AFTER INSERT ON clients BEGIN \
     INSERT INTO client_search (rowid, name, reported_ip, peer_ip, domain, installed) \
     VALUES (new.rowid, new.name, new.reported_ip, new.peer_ip, new.domain, new.installed); END",
    "CREATE TRIGGER IF NOT EXISTS client_search_delete AFTER DELETE ON clients BEGIN \
     DELETE FROM client_search WHERE rowid = old.rowid; END",
    "CREATE TRIGGER IF NOT EXISTS client_search_update AFTER UPDATE OF name, reported_ip, \
     peer_ip, domain, installed ON clients WHEN old.name IS NOT new.name \
     OR old.reported_ip IS NOT new.reported_ip OR old.peer_ip IS NOT new.peer_ip \
     OR old.domain IS NOT new.domain OR old.installed IS NOT new.installed BEGIN \
     DELETE FROM client_search WHERE rowid = old.rowid; \
     INSERT INTO client_search (rowid, name, reported_ip, peer_ip, domain, installed) \
     VALUES (new.rowid, new.name, new.reported_ip, new.peer_ip, new.domain, new.installed); END",
];

/// Where filling the search index stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchFill {
    /// More rows to index after this client rowid (SQLite).
    After(i64),
    /// Complete: searches use the index.
    Done,
}

impl Store {
    /// The search index the clients list uses now.
    pub fn search_index(&self) -> SearchIndex {
        self.search.get()
    }

    /// Starts the search index (creates it when missing) and says where filling it stands.
    /// On PostgreSQL this builds the whole index (`CREATE INDEX CONCURRENTLY`: check-ins go on
    /// meanwhile) and needs the `pg_trgm` extension (in Debian's `postgresql` package; a
    /// database owner may create it).
    ///
    /// # Errors
    /// Database errors (PostgreSQL: also when `pg_trgm` cannot be created).
    pub async fn search_start(&self) -> Result<SearchFill, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let sqlite = conn.backend_name() == "SQLite";
        let backend = if sqlite { "sqlite" } else { "postgres" };
        let index = if sqlite {
            SearchIndex::SqliteTrigram
        } else {
            SearchIndex::PostgresTrigram
        };
        let ready = sqlx::query("SELECT at FROM client_search_ready WHERE backend = $1")
            .bind(backend)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        if ready {
            self.search.set(index);
            return Ok(SearchFill::Done);
        }
        if sqlite {
            let mut tx = crate::db::begin_write(&mut conn).await?;
            for ddl in SQLITE_DDL {
                sqlx::query(ddl).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            return Ok(SearchFill::After(i64::MIN));
        }
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            .execute(&mut *conn)
            .await?;
        // A concurrent build cut short leaves an invalid index behind: build it again.
        let invalid = sqlx::query(
            "SELECT 1 AS x FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'clients_search' AND NOT i.indisvalid",
        )
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
        if invalid {
            sqlx::query("DROP INDEX CONCURRENTLY IF EXISTS clients_search")
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS clients_search ON clients \
             USING gin (({PG_TEXT}) gin_trgm_ops)"
        ))
        .execute(&mut *conn)
        .await?;
        self.search_done(index).await?;
        Ok(SearchFill::Done)
    }

    /// Indexes (SQLite) the next at most `limit` clients after rowid `after` that the
    /// triggers have not indexed yet, in one transaction; the last batch marks the index
    /// complete.
    ///
    /// # Errors
    /// Database errors.
    pub async fn search_fill(&self, after: i64, limit: u32) -> Result<SearchFill, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let last: Option<i64> = sqlx::query(&format!(
            "SELECT MAX(r) AS last FROM (SELECT rowid AS r FROM clients WHERE rowid > $1 \
             ORDER BY rowid LIMIT {limit}) AS b"
        ))
        .bind(after)
        .fetch_one(&mut *tx)
        .await?
        .try_get("last")?;
        let Some(last) = last else {
            tx.commit().await?;
            self.search_done(SearchIndex::SqliteTrigram).await?;
            return Ok(SearchFill::Done);
        };
        sqlx::query(
            "INSERT INTO client_search (rowid, name, reported_ip, peer_ip, domain, installed) \
             SELECT c.rowid, c.name, c.reported_ip, c.peer_ip, c.domain, c.installed \
             FROM clients c WHERE c.rowid > $1 AND c.rowid <= $2 \
             AND NOT EXISTS (SELECT 1 FROM client_search s WHERE s.rowid = c.rowid)",
        )
        .bind(after)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SearchFill::After(last))
    }

    async fn search_done(&self, index: SearchIndex) -> Result<(), StoreError> {
        let backend = if index == SearchIndex::SqliteTrigram {
            "sqlite"
        } else {
            "postgres"
        };
        sqlx::query(
            "INSERT INTO client_search_ready (backend, at) VALUES ($1, $2) \
             ON CONFLICT (backend) DO NOTHING",
        )
        .bind(backend)
        .bind(self.clock.now())
        .execute(&self.pool)
        .await?;
        self.search.set(index);
        Ok(())
    }
}

/// The FTS5 query for `text` as one phrase: every character literal (quotes doubled), so a
/// client matches when `text` is a substring of one of its columns (case-insensitive).
pub(super) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Quotes in a search are literal in the FTS5 phrase.
    #[test]
    fn phrase_quotes() {
        assert_eq!(fts_phrase("a\"b"), "\"a\"\"b\"");
    }
}
