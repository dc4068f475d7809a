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
