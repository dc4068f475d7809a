-- The version of the agent program a client runs, from its latest check-in that carried one
-- (docs/operating.md#agent-self-update).
ALTER TABLE clients ADD COLUMN agent_version TEXT;
