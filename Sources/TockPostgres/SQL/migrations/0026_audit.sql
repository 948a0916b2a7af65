-- 0026_audit: the audit log (who changed what, when, the values before and after), kept apart from the run history
-- and longer; and an index for the runs that did not succeed, which the operator pages filter on. Forward-only.
--
-- tock.audit is written only by the SQL that makes a change, in its transaction (05_audit.sql): triggers on the
-- tables people change (jobs, config, pools, hooks) and the functions that act on runs. No role but the schema's
-- owner may write it: every entry point is SECURITY DEFINER (90_privileges.sql) and none deletes from it but the
-- retention (tock.purge_audit).

SET LOCAL lock_timeout = '30s';

CREATE TABLE IF NOT EXISTS tock.audit (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    -- Who, as the caller named itself: an API token's name, a CLI call's OS user, else the database login.
    actor    text NOT NULL,
    -- How: 'api', 'cli' or 'sql'.
    via      text NOT NULL,
    -- The database login of the session (session_user): what PostgreSQL authenticated, whatever actor says.
    db_role  text NOT NULL,
    action   text NOT NULL,
    job_id   bigint,
    job_name text,
    run_id   bigint,
    before   jsonb,
    after    jsonb,
    CONSTRAINT audit_via_is_known CHECK (via IN ('api', 'cli', 'sql'))
);
COMMENT ON TABLE tock.audit IS 'Every change of state people made: who, when, what, before and after. Read tock.audit_log.';
-- The log newest first, one job's entries newest first (by id: a renamed job keeps its id), and the retention.
CREATE INDEX IF NOT EXISTS audit_job_idx ON tock.audit (job_id, id DESC) WHERE job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_at_idx ON tock.audit (at);

ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS audit_retention interval NOT NULL DEFAULT '365 days';
ALTER TABLE tock.config DROP CONSTRAINT IF EXISTS config_audit_retention_is_at_least_a_day;
ALTER TABLE tock.config ADD CONSTRAINT config_audit_retention_is_at_least_a_day CHECK (audit_retention >= interval '1 day');
COMMENT ON COLUMN tock.config.audit_retention IS 'How long tock.audit keeps an entry (apart from the run history''s retention).';

-- The runs that did not succeed, newest first: the failures page and every run filter on a failed status walk this
-- instead of the whole history. Small (failures are few) and built with the history locked against finishes for as
-- long as that takes: seconds for a million finished runs.
-- The run a retry by hand started from this one (tock.retry, tock.bulk_runs): a bulk retry of what a filter
-- matches leaves out the runs already retried, so that repeating it (or its next thousand) never runs one twice.
ALTER TABLE tock.finished_runs ADD COLUMN IF NOT EXISTS retried_by bigint;

CREATE INDEX IF NOT EXISTS finished_runs_unsuccessful_idx ON tock.finished_runs (id) WHERE status <> 'succeeded';
