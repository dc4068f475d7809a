-- What an update agent's relay served (a RelayReport as JSON), from its latest check-in
-- that carried one.
ALTER TABLE clients ADD COLUMN relay_report TEXT;
