-- 0025_http_jobs: a job's target is a script or an HTTP request (tock.jobs.http: method, url, headers, body, expect),
-- which the worker sends and records the answer of. Forward-only.

SET LOCAL lock_timeout = '30s';

ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS http jsonb;
COMMENT ON COLUMN tock.jobs.http IS
    'An HTTP job''s request, {"method", "url", "headers", "body", "expect"} (NULL: the job runs its script).';
ALTER TABLE tock.jobs ALTER COLUMN script DROP NOT NULL;
ALTER TABLE tock.jobs DROP CONSTRAINT IF EXISTS jobs_script_or_http;
ALTER TABLE tock.jobs ADD CONSTRAINT jobs_script_or_http CHECK ((script IS NULL) <> (http IS NULL));
