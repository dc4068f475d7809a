-- The clients a notice is for, when a rollout issued it for some rings only
-- (docs/architecture.md#notify-across-restarts): a JSON array of client ids; NULL for a notice
-- to every client. Every replica reads it, so a ring's notice reaches that ring's clients only,
-- on whichever replica their streams are held.
ALTER TABLE notifications ADD COLUMN scope TEXT;
