-- 0015_trigger_keys: idempotent run-nows. Forward-only.

-- A run-now may carry a key (tock.run_now(job, p_key => …), the API's Idempotency-Key header, `tock job run
-- --key`): the same key for the same job within 24 hours answers the first run's id and enqueues nothing, so a
-- double-clicked Run now, or a call retried after its answer was lost, starts one run. One row per key; the
-- scheduler's tock.purge_history forgets keys a day old. Only keyed run-nows write here: the claim path never
-- reads it.
CREATE TABLE IF NOT EXISTS tock.trigger_keys (
    job_id bigint NOT NULL REFERENCES tock.jobs (id) ON DELETE CASCADE,
    key text NOT NULL,
    run_id bigint,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, key)
);
CREATE INDEX IF NOT EXISTS trigger_keys_created_idx ON tock.trigger_keys (created_at);
COMMENT ON TABLE tock.trigger_keys IS
    'Run-now keys of the last 24 hours: the run each (job, key) started (tock.run_now''s p_key).';
