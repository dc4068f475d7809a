-- Named users with a role and an argon2id password hash; API tokens belong to a user and
-- may expire. A token row without a user (made before users existed) acts as an admin.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
ALTER TABLE tokens ADD COLUMN user_name TEXT;
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
-- Enrollment tokens (kind `enroll`): several, named (`label`), each with an optional
-- maximum number of uses; `agent` = 1 makes a client enrolling with it an approved update
-- agent.
ALTER TABLE tokens ADD COLUMN max_uses BIGINT;
ALTER TABLE tokens ADD COLUMN uses BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN agent BIGINT NOT NULL DEFAULT 0;
-- A client is an update agent only once approved (by an admin, or by enrolling with an
-- agent enrollment token): unix seconds of the approval.
ALTER TABLE clients ADD COLUMN agent_approved_at BIGINT;
