-- Failed credential attempts and lockouts (`docs/operating.md#rate-limits-and-lockout`): one
-- row per counted key (`login-user:NAME`, `login-addr:IP`, `enroll-token:ID`,
-- `enroll-addr:IP`, `token-id:KIND_ID`, `token-addr:IP`), written only on failures and
-- removed by a success of that name or id; replicas sharing the database share the counts.
CREATE TABLE auth_failures (
    subject TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT
);
