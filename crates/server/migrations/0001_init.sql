-- cascade server schema, portable between SQLite and PostgreSQL: only TEXT and BIGINT,
-- times are Unix seconds, JSON is stored as TEXT.

-- The whole policy (a PolicyDoc as JSON) under a revision number; one row, id = 1.
CREATE TABLE policy (
    id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL,
    doc TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Every revision ever written, for audit and rollback.
CREATE TABLE policy_history (
    revision BIGINT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Admin and enrollment tokens: only argon2id hashes of their secrets are stored.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Enrolled clients and update agents, with their last check-in.
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain TEXT,
    agent_address TEXT,
    credential_hash TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    enrolled_from TEXT NOT NULL,
    last_seen BIGINT,
    reported_ip TEXT,
    peer_ip TEXT,
    installed TEXT NOT NULL,
    last_update TEXT,
    last_outcome TEXT
);

-- Notify All Clients, as issued.
CREATE TABLE notifications (
    id BIGINT PRIMARY KEY,
    issued_at BIGINT NOT NULL,
    issued_by TEXT NOT NULL,
    categories TEXT NOT NULL,
    agents BIGINT NOT NULL,
    clients BIGINT NOT NULL
);
