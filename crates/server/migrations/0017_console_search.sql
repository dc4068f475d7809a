-- The console's work for clients from before a version, done in the background in batches
-- (docs/operating.md#filling-in-after-an-upgrade), and the clients search index
-- (docs/operating.md#clients-list).

-- The clients whose fleet figures (0015_fleet_stats.sql) are still to be filled in: each
-- batch takes the next few from this index, and each client leaves it in the transaction that
-- stores its figures, so a batch cut short by a kill is done again, never twice.
CREATE INDEX IF NOT EXISTS clients_to_derive ON clients (id) WHERE derived IS NULL;

-- The search index of the clients list is a trigram index that differs by database (SQLite:
-- an FTS5 table kept by triggers; PostgreSQL: a pg_trgm GIN index), made by the server
-- (`store/search.rs`). A row here says that index is complete and searches may use it.
CREATE TABLE IF NOT EXISTS client_search_ready (
    backend TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
