-- Console sessions (`docs/operating.md#console-sessions`), shared by every replica on this
-- database. The key is the SHA-256 (hex) of the random cookie value: the cookie alone holds the
-- secret. `role` is the user's role at login; deleting the user, changing its role or revoking
-- the token it logged in with deletes its rows. `flash_*` is the one-shot message of the next
-- page. `last_seen` is refreshed at most once a minute; rows past `expires_at` are purged at
-- each login.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    token_id TEXT,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    flash_kind TEXT,
    flash_text TEXT
);
CREATE INDEX console_sessions_user ON console_sessions (user_name);
CREATE INDEX console_sessions_token ON console_sessions (token_id);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
