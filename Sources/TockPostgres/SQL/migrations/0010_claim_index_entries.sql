-- 0010_claim_index_entries: a claim adds two index entries besides the primary key's, where it added three, and an
-- enqueue two, where it added three and checked a foreign key per run. Forward-only.
--
-- Neither update of a run (the claim, the finish) can be HOT: both change status, which partial indexes name. So
-- every index whose predicate the new row version meets takes a new entry, and in a drain of no-op runs adding
-- index entries was 31% of PostgreSQL's time. Every version of every run entered the history index; now only a
-- finished run does, and a job's runs are the union of two partial indexes:
--   runs_job_history_idx  (job_id, id DESC), finished runs: the history of what ended;
--   runs_active_idx       (job_id, id), pending and running runs (the id added: a job's newest and oldest active
--                         runs are one probe).
-- A run is in exactly one of them (status pending or running if and only if finished_at is null:
-- runs_finished_iff_final).
--
-- The foreign key from runs to jobs needed an index of every run by job for its cascade, so it goes too. Triggers
-- keep what it kept (30_runs.sql, 20_jobs.sql): a run names a job that exists (checked once per inserting
-- statement, which locks each job it names FOR KEY SHARE, as the key's check did for each run), its job_id does
-- not change, and deleting a job deletes its runs.
ALTER TABLE tock.runs DROP CONSTRAINT IF EXISTS runs_job_id_fkey;

DROP INDEX IF EXISTS tock.runs_active_idx;
CREATE INDEX runs_active_idx ON tock.runs (job_id, id) WHERE status IN ('pending', 'running');

DROP INDEX IF EXISTS tock.runs_job_history_idx;
CREATE INDEX runs_job_history_idx ON tock.runs (job_id, id DESC) WHERE finished_at IS NOT NULL;
