-- 0024_job_environment: a job's environment variables (values stored with it, not secret) and the names of the
-- secrets it needs, which a worker reads from its own secrets file: secret values never reach the database.
-- Forward-only.

SET LOCAL lock_timeout = '30s';

ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS env jsonb;
COMMENT ON COLUMN tock.jobs.env IS 'Environment variables its script gets, {"NAME": "value"} (NULL: none); not for secrets.';
ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS secrets text[];
COMMENT ON COLUMN tock.jobs.secrets IS
    'The secrets its script gets as variables, by name; each worker reads their values from its --secrets-file.';
