-- Fleet statistics for the console (docs/operating.md#fleet-charts): what each check-in's
-- update report says, kept in columns and small tables so the dashboard, agents and
-- compliance pages aggregate in SQL instead of reading every client's report (JSON).

-- Per client, from its last update report (written at each check-in that carries one):
-- the report's finish time, the categories whose attempts all failed (`components,programs`),
-- the failed and the failed-or-quit attempts; and a sortable key of its IP (reported, else
-- connecting): `4` and 8 hex digits for IPv4, `6` and 32 for IPv6, so 127.0.0.9 sorts before
-- 127.0.0.10 and an IP range is one index range. `derived` is 1 once these are filled.
ALTER TABLE clients ADD COLUMN report_at BIGINT;
ALTER TABLE clients ADD COLUMN failed_categories TEXT;
ALTER TABLE clients ADD COLUMN failed_attempts BIGINT;
ALTER TABLE clients ADD COLUMN problem_attempts BIGINT;
ALTER TABLE clients ADD COLUMN ip_key TEXT;
ALTER TABLE clients ADD COLUMN derived BIGINT;
CREATE INDEX IF NOT EXISTS clients_by_ip_key ON clients (ip_key, id);
CREATE INDEX IF NOT EXISTS clients_by_agent_address ON clients (agent_address);
-- Covering indexes: the state counts, the compliance groups and the recovered failures are
-- read from these alone, not from the rows (which carry each report's JSON).
CREATE INDEX IF NOT EXISTS clients_by_state ON clients (last_seen, last_outcome);
CREATE INDEX IF NOT EXISTS clients_by_installed ON clients (installed, failed_categories);
CREATE INDEX IF NOT EXISTS clients_by_failed_attempts ON clients (failed_attempts, last_outcome);
CREATE INDEX IF NOT EXISTS clients_by_report_at ON clients (report_at);

-- Per client and source of its last report: how its last attempt there ended (ok 1: ok or
-- up to date, 0: failed, -1: neither), when, why, who served the client instead, the bytes it
-- got there, and the client's last check-in (`seen`, kept at every check-in). Replaced at
-- each new report; the source health is a GROUP BY over its covering index.
CREATE TABLE IF NOT EXISTS client_sources (
    client_id TEXT NOT NULL,
    source TEXT NOT NULL,
    ok BIGINT NOT NULL,
    seen BIGINT,
    at BIGINT,
    reason TEXT,
    served_by TEXT,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (client_id, source)
);
CREATE INDEX IF NOT EXISTS client_sources_by_source
    ON client_sources (source, ok, seen, at, bytes);

-- Bytes and clients per hour (Unix hour, server clock: when the report arrived) and source,
-- added once per new report; kept 14 days.
CREATE TABLE IF NOT EXISTS traffic (
    hour BIGINT NOT NULL,
    source TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    clients BIGINT NOT NULL,
    PRIMARY KEY (hour, source)
);

-- The fleet over time: a sample per minute (every 5 s for 5 minutes after a notify), kept
-- 7 days: clients in all, current in every published category, failed.
CREATE TABLE IF NOT EXISTS fleet_samples (
    at BIGINT PRIMARY KEY,
    total BIGINT NOT NULL,
    current BIGINT NOT NULL,
    failed BIGINT NOT NULL
);
