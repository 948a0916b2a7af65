-- 0008_run_timeout_at: a running run records when its worker stops the script. Forward-only.

-- The worker enforces the timeout its claim returned, but tock.rescue() and tock.stuck_runs read the job's timeout
-- as it is now. An operator who shortened a job's timeout during a long run made rescue fail that run over, and
-- retry it, while its script was still running under the old timeout: the job ran twice at once. tock.claim_runs
-- now sets this, and the worker's timeout is this minus the claim's time, so the two cannot disagree. NULL for
-- pending and finished-before-this-migration runs; a run still running from before falls back to the job's timeout.
ALTER TABLE tock.runs ADD COLUMN IF NOT EXISTS timeout_at timestamptz;
COMMENT ON COLUMN tock.runs.timeout_at IS
    'When the worker stops this attempt''s script: its claim time plus the job''s timeout at that moment.';
