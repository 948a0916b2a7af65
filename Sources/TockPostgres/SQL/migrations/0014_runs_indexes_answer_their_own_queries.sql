-- 0014_runs_indexes_answer_their_own_queries: tock.runs' secondary indexes serve only the queries they were made
-- for, never a lookup by id. Forward-only.

-- The queue's table is often empty when autovacuum analyzes it, and its statistics then say "no rows in these
-- pages" while thousands of runs wait. From those, every index looks empty, a walk of any of them costs as little
-- as a probe of the primary key, and the planner took runs_job_idx (job_id, id) for lookups by id: each claim of
-- 100 walked it once per run (16,000 buffers, 25 ms, where the probes take 0.4 ms), and the claim's plan is made
-- once per session. A predicate that only their own queries imply keeps each out of the others' plans: every query
-- of a job's runs names the job, every walk in claim order bounds run_after. Neither column changes at a claim, so
-- the claim stays a HOT update. (A query that must state the predicate writes a strict comparison, e.g.
-- run_after >= '-infinity': PostgreSQL 17 drops a redundant IS NOT NULL from queries before matching partial
-- indexes.)
-- Dropping an index locks tock.runs until the commit: within 30 s, or the migration fails and can be run again.
SET LOCAL lock_timeout = '30s';
DROP INDEX IF EXISTS tock.runs_job_idx;
CREATE INDEX runs_job_idx ON tock.runs (job_id, id) WHERE job_id IS NOT NULL;
DROP INDEX IF EXISTS tock.runs_claim_idx;
CREATE INDEX runs_claim_idx ON tock.runs (priority DESC, run_after, id) WHERE run_after IS NOT NULL;
