-- 0006_claim_without_worker_key: a claim no longer checks a foreign key per run. Forward-only.

-- tock.claim_runs sets worker_id on every run it takes, and the key to tock.workers checked each one: a query
-- and a share lock on the worker's row per run, 18% of a 100-run claim (measured with pgbench). claim_runs is
-- the only writer of worker_id and already refuses a worker that is not registered and running, and
-- tock.purge_history deletes only workers that stopped before the retention horizon with no run in flight. A run
-- that outlives its purged worker keeps the number; tock.run_history shows no host for it, as it did before.
ALTER TABLE tock.runs DROP CONSTRAINT IF EXISTS runs_worker_id_fkey;
