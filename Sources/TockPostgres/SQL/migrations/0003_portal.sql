-- 0003_portal: what the portal's statistics read. Forward-only.

-- Runs by the time they ended: tock.job_stats and tock.stats() read the last 24 hours / 7 days through it.
CREATE INDEX runs_finished_idx ON tock.runs (finished_at) WHERE finished_at IS NOT NULL;

INSERT INTO tock.migrations (version, name) VALUES (3, '0003_portal') ON CONFLICT (version) DO NOTHING;
