-- 0004_operations: settings a DBA governs (history retention) and the index retention deletes by. Forward-only.
-- The roles tock_admin, tock_worker and tock_viewer and their grants are in functions/90_privileges.sql, which
-- every `tock migrate` re-applies, so a function added later is granted too.

-- One row: Tock's settings. Change them with tock.set_history_retention(…) or a plain UPDATE as the owner.
CREATE TABLE tock.config (
    id                boolean PRIMARY KEY DEFAULT true,
    history_retention interval NOT NULL DEFAULT '30 days',
    purge_batch       int NOT NULL DEFAULT 1000,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT config_is_one_row CHECK (id),
    CONSTRAINT config_history_retention_is_at_least_an_hour CHECK (history_retention >= interval '1 hour'),
    CONSTRAINT config_purge_batch_is_in_range CHECK (purge_batch BETWEEN 1 AND 100000)
);
COMMENT ON TABLE tock.config IS 'Tock''s settings (one row): how long finished runs and their output are kept, and the purge batch size.';
INSERT INTO tock.config DEFAULT VALUES;

-- Dead letters are counted at every metrics scrape and listed by the API: find them without reading the history.
CREATE INDEX runs_dead_idx ON tock.runs (finished_at) WHERE status = 'dead';

INSERT INTO tock.migrations (version, name) VALUES (4, '0004_operations') ON CONFLICT (version) DO NOTHING;
