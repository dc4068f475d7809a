-- The console's clients list pages through every client in SQL (LIMIT/OFFSET), sorted by
-- name or by last check-in (docs/operating.md#clients-list); these keep a page of 100,000
-- clients from sorting the whole table.
CREATE INDEX IF NOT EXISTS clients_by_name ON clients (name, id);
CREATE INDEX IF NOT EXISTS clients_by_last_seen ON clients (last_seen, id);
