-- 0002_faults: retries with backoff, misfire policy, cancel requests. Forward-only.

ALTER TABLE tock.jobs
    ADD COLUMN retry_base interval NOT NULL DEFAULT '10 seconds',
    ADD COLUMN retry_cap interval NOT NULL DEFAULT '10 minutes',
    ADD COLUMN misfire text NOT NULL DEFAULT 'run_once',
    ADD CONSTRAINT jobs_retry_base_is_positive CHECK (retry_base > interval '0'),
    ADD CONSTRAINT jobs_retry_cap_is_at_least_base CHECK (retry_cap >= retry_base),
    ADD CONSTRAINT jobs_misfire_is_known CHECK (misfire IN ('run_once', 'skip'));
COMMENT ON COLUMN tock.jobs.retry_base IS 'First retry delay; doubles per attempt up to retry_cap, with ±25% jitter.';
COMMENT ON COLUMN tock.jobs.misfire IS 'After downtime: run_once (one run for the missed fire times) or skip (wait for the next).';

ALTER TABLE tock.runs
    ADD COLUMN cancel_requested_at timestamptz;

INSERT INTO tock.migrations (version, name) VALUES (2, '0002_faults') ON CONFLICT (version) DO NOTHING;
