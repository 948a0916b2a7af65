-- 0022_parameters: parameters a job declares and a run is given when triggered, and a job's description.
-- Forward-only.
--
-- A job's declarations are a JSON array (tock.checked_param_defs says what each holds); a run keeps the values it
-- ran with, defaults filled in, as a JSON object of strings. Both NULL for jobs without parameters, so the claim of
-- a run without them reads nothing more.

SET LOCAL lock_timeout = '30s';

ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS params jsonb;
COMMENT ON COLUMN tock.jobs.params IS
    'The parameters a run of this job takes: [{"name", "default", "required", "choices", "pattern"}] (NULL: none).';
ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS description text;
COMMENT ON COLUMN tock.jobs.description IS 'Free text for the people who run the job (at most 2,000 characters).';

ALTER TABLE tock.runs ADD COLUMN IF NOT EXISTS params jsonb;
COMMENT ON COLUMN tock.runs.params IS 'The parameter values this run runs with, defaults filled in (NULL: the job has none).';
ALTER TABLE tock.finished_runs ADD COLUMN IF NOT EXISTS params jsonb;
COMMENT ON COLUMN tock.finished_runs.params IS 'The parameter values this run ran with (NULL: the job had none).';
