-- 0018_limits: concurrency and rate limits per pool and per job, enforced by the claim across every worker.
-- Forward-only.
--
-- A pool's limits live in tock.pools (a row only for a pool that has some); a job's in tock.jobs. Each lease of a
-- running run names its pool and job, so a claim counts what runs of a limited pool or job are running with one
-- short index scan of the leases (runs in flight only), never of the queue. Starts are logged per rate-limited pool
-- or job in tock.limit_starts, which the claim prunes to the limit's period: at most a limit's count of rows each.

SET LOCAL lock_timeout = '30s';
LOCK TABLE tock.jobs, tock.run_leases IN ACCESS EXCLUSIVE MODE;

CREATE TABLE IF NOT EXISTS tock.pools (
    name        text PRIMARY KEY,
    max_running int,
    rate_limit  int,
    rate_period interval,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pools_name_is_valid CHECK (name ~ '^[A-Za-z][A-Za-z0-9._-]{0,63}$'),
    CONSTRAINT pools_max_running_is_valid CHECK (max_running BETWEEN 1 AND 100000),
    CONSTRAINT pools_rate_is_valid CHECK ((rate_limit IS NULL) = (rate_period IS NULL)
        AND rate_limit BETWEEN 1 AND 100000 AND rate_period BETWEEN interval '1 second' AND interval '1 day')
);
COMMENT ON TABLE tock.pools IS 'Limits of a pool across every worker: at most max_running running, rate_limit starts per rate_period.';

ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS max_running int;
ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS rate_limit int;
ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS rate_period interval;
ALTER TABLE tock.jobs DROP CONSTRAINT IF EXISTS jobs_max_running_is_valid;
ALTER TABLE tock.jobs ADD CONSTRAINT jobs_max_running_is_valid CHECK (max_running BETWEEN 1 AND 100000);
ALTER TABLE tock.jobs DROP CONSTRAINT IF EXISTS jobs_rate_is_valid;
ALTER TABLE tock.jobs ADD CONSTRAINT jobs_rate_is_valid CHECK ((rate_limit IS NULL) = (rate_period IS NULL)
    AND rate_limit BETWEEN 1 AND 100000 AND rate_period BETWEEN interval '1 second' AND interval '1 day');
COMMENT ON COLUMN tock.jobs.max_running IS 'At most this many runs of the job running at once across every worker (NULL: no limit).';
COMMENT ON COLUMN tock.jobs.rate_limit IS 'At most this many starts of the job per rate_period across every worker (NULL: no limit).';
-- The pools a claim serves one run at a time under a lock, because some job in them has a limit: found by this
-- index, which holds only the limited jobs.
CREATE INDEX IF NOT EXISTS jobs_limited_idx ON tock.jobs (pool) WHERE max_running IS NOT NULL OR rate_limit IS NOT NULL;

ALTER TABLE tock.run_leases ADD COLUMN IF NOT EXISTS pool text;
ALTER TABLE tock.run_leases ADD COLUMN IF NOT EXISTS job_id bigint;
UPDATE tock.run_leases l SET pool = r.pool, job_id = r.job_id FROM tock.runs r WHERE r.id = l.run_id;
CREATE INDEX IF NOT EXISTS run_leases_pool_idx ON tock.run_leases (pool);
CREATE INDEX IF NOT EXISTS run_leases_job_idx ON tock.run_leases (job_id);

CREATE TABLE IF NOT EXISTS tock.limit_starts (
    scope      text NOT NULL,          -- 'pool:NAME' or 'job:ID'
    started_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS limit_starts_scope_idx ON tock.limit_starts (scope, started_at);
COMMENT ON TABLE tock.limit_starts IS 'Recent starts of rate-limited pools and jobs, pruned by the claim to the limit''s period.';
