-- Rollout evaluation (docs/operating.md#rollouts) without reading every client: per client,
-- from its last update report (written with it at each check-in that carries one), the
-- report's finish time when a programs step failed, quit or carries a failure (the only
-- reports a rollout can count as failing), 0 when none does. NULL: not derived yet (reports
-- stored before this migration); the first evaluation derives those once. The evaluation
-- reads only the clients whose value is at or after the current ring's start.
ALTER TABLE clients ADD COLUMN program_trouble_at BIGINT;
CREATE INDEX IF NOT EXISTS clients_by_program_trouble ON clients (program_trouble_at);
