-- 0023_chains: a hook may run another job instead of calling a webhook (B after A succeeds). The run it enqueues
-- is written by the finish that ended A's run, in the same transaction (tock.enqueue_hooks), with trigger 'chain'
-- and what it came from (upstream: A's run id, job and status), which its script gets as TOCK_UPSTREAM_*.
-- Forward-only.

SET LOCAL lock_timeout = '30s';

ALTER TABLE tock.hooks ADD COLUMN IF NOT EXISTS run_job_id bigint REFERENCES tock.jobs (id) ON DELETE CASCADE;
COMMENT ON COLUMN tock.hooks.run_job_id IS 'The job a chain hook runs (NULL: a webhook, to url).';
ALTER TABLE tock.hooks ALTER COLUMN url DROP NOT NULL;
ALTER TABLE tock.hooks ALTER COLUMN secret DROP NOT NULL;
-- A webhook has its address and secret; a chain has its job, belongs to one job (a fleet-wide chain would run
-- itself), and follows a run's end (not 'late').
ALTER TABLE tock.hooks DROP CONSTRAINT IF EXISTS hooks_one_action;
ALTER TABLE tock.hooks ADD CONSTRAINT hooks_one_action CHECK (
    (run_job_id IS NULL AND url IS NOT NULL AND secret IS NOT NULL)
    OR (run_job_id IS NOT NULL AND url IS NULL AND secret IS NULL AND job_id IS NOT NULL AND event <> 'late'));
CREATE INDEX IF NOT EXISTS hooks_run_job_idx ON tock.hooks (run_job_id) WHERE run_job_id IS NOT NULL;
-- One chain from a job to another per event: twenty copies of one would start twenty runs per end, and each of
-- those twenty more.
CREATE UNIQUE INDEX IF NOT EXISTS hooks_one_chain_per_event ON tock.hooks (job_id, event, run_job_id) WHERE run_job_id IS NOT NULL;

ALTER TABLE tock.runs DROP CONSTRAINT IF EXISTS runs_trigger_is_known;
ALTER TABLE tock.runs ADD CONSTRAINT runs_trigger_is_known
    CHECK (trigger IN ('schedule', 'manual', 'sql', 'api', 'retry', 'chain'));
ALTER TABLE tock.runs ADD COLUMN IF NOT EXISTS upstream jsonb;
COMMENT ON COLUMN tock.runs.upstream IS 'For a chained run: the run whose end started it, {"run_id", "job", "status"}.';
ALTER TABLE tock.finished_runs ADD COLUMN IF NOT EXISTS upstream jsonb;
COMMENT ON COLUMN tock.finished_runs.upstream IS 'For a chained run: the run whose end started it, {"run_id", "job", "status"}.';
