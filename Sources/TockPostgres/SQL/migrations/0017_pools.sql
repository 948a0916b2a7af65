-- 0017_pools: worker pools. A job names a pool ('default' unless it says); a worker serves one or more pools and
-- claims only their runs. Forward-only.
--
-- A run carries its job's pool from when it is enqueued (a job moved to another pool moves its pending runs), so
-- the claim finds a pool's runs by index: runs_claim_idx leads with the pool, and a claim walks only the pools its
-- worker serves, never another pool's runs. Finished runs keep the pool they ran in. No column a claim changes is
-- indexed, so the claim stays a HOT update.

SET LOCAL lock_timeout = '30s';
-- Every table this changes, locked at once and in one order: a finish holds tock.runs and then reads tock.jobs,
-- and taking them one by one could deadlock with it.
LOCK TABLE tock.jobs, tock.runs, tock.finished_runs, tock.workers IN ACCESS EXCLUSIVE MODE;

ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS pool text NOT NULL DEFAULT 'default';
ALTER TABLE tock.jobs DROP CONSTRAINT IF EXISTS jobs_pool_is_valid;
ALTER TABLE tock.jobs ADD CONSTRAINT jobs_pool_is_valid CHECK (pool ~ '^[A-Za-z][A-Za-z0-9._-]{0,63}$');
COMMENT ON COLUMN tock.jobs.pool IS 'The pool whose workers run this job (tock worker --pools).';

ALTER TABLE tock.runs ADD COLUMN IF NOT EXISTS pool text NOT NULL DEFAULT 'default';
ALTER TABLE tock.finished_runs ADD COLUMN IF NOT EXISTS pool text NOT NULL DEFAULT 'default';

ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS pools text[] NOT NULL DEFAULT '{default}';
COMMENT ON COLUMN tock.workers.pools IS 'The pools this worker claims runs of, in the order it was given them.';

DROP INDEX IF EXISTS tock.runs_claim_idx;
CREATE INDEX runs_claim_idx ON tock.runs (pool, priority DESC, run_after, id) WHERE run_after IS NOT NULL;
