-- 0007_drop_overlap_queue_index: an index nothing reads any more. Forward-only.

-- 0005 added jobs_overlap_queue_idx for claim_runs' test "is this job overlap 'queue'?". The planner turned that
-- test into a hash of every entry of the index, per claim (43 ms for a claim of 100 with 100,000 queue jobs);
-- claim_runs and the queue-unblocked trigger now probe each job by its primary key instead.
DROP INDEX IF EXISTS tock.jobs_overlap_queue_idx;
