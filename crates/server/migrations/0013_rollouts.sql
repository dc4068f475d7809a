-- Progressive rollouts (docs/operating.md#rollouts): a program version going out in rings.
-- `rings` is the JSON list of ring specs; `ring` the current ring (0-based) and
-- `ring_started_at` when it started soaking; `state` one of rolling, halted, completed,
-- rolled_back. `revision` is set from one counter shared by every rollout on each change
-- (MAX(revision) is the rollout revision clients fold into their policy revision); UNIQUE
-- keeps two replicas from writing the same one.
CREATE TABLE rollouts (
    id BIGINT PRIMARY KEY,
    program TEXT NOT NULL,
    version TEXT NOT NULL,
    previous_version TEXT,
    rings TEXT NOT NULL,
    state TEXT NOT NULL,
    ring BIGINT NOT NULL,
    ring_started_at BIGINT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL UNIQUE
);
CREATE INDEX rollouts_by_program ON rollouts (program, id);
