-- Every change and every refused admin action: who (`user:<name>`, or `-` when the
-- credential did not verify), when, from where, the request, its status, and the policy's
-- changed top-level parts before and after (JSON objects) when the policy changed.
CREATE TABLE audit (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    before_doc TEXT,
    after_doc TEXT
);
