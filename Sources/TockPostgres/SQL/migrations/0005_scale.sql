-- 0005_scale: indexes measured with 100,000 jobs and 5,000,000 runs (`tock bench scale`). Forward-only.

-- tock.stats() counts the runs that ended in the last 24 hours by status: with the status in the index, that is
-- an index-only scan of one day's entries instead of a visit to every one of those rows.
CREATE INDEX runs_finished_status_idx ON tock.runs (finished_at) INCLUDE (status) WHERE finished_at IS NOT NULL;
DROP INDEX tock.runs_finished_idx;

-- Every claim asks, for each run, whether its job has overlap 'queue'; with this index the answer comes from a
-- handful of entries, not from a scan of every job.
CREATE INDEX jobs_overlap_queue_idx ON tock.jobs (id) WHERE overlap = 'queue';
