-- 0019_fleet_defaults: fleet-wide defaults for the settings a job may leave out (attempts, retry backoff, timeout,
-- overlap, pool) in tock.config, and which of its values each job inherits. Forward-only.
--
-- A job's settings stay concrete columns, so the claim, the finish and the tick read them as before; a job that
-- did not set one lists it in tock.jobs.inherits, and tock.set_config writes a new default into those jobs too.

SET LOCAL lock_timeout = '30s';
LOCK TABLE tock.config, tock.jobs IN ACCESS EXCLUSIVE MODE;

ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS default_max_attempts int NOT NULL DEFAULT 1;
ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS default_timeout interval NOT NULL DEFAULT '1 hour';
ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS default_retry_base interval NOT NULL DEFAULT '10 seconds';
ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS default_retry_cap interval NOT NULL DEFAULT '10 minutes';
ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS default_overlap text NOT NULL DEFAULT 'skip';
ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS default_pool text NOT NULL DEFAULT 'default';
ALTER TABLE tock.config DROP CONSTRAINT IF EXISTS config_defaults_are_valid;
ALTER TABLE tock.config ADD CONSTRAINT config_defaults_are_valid CHECK (
    default_max_attempts BETWEEN 1 AND 100
    AND default_timeout > interval '0' AND default_retry_base > interval '0' AND default_retry_cap >= default_retry_base
    AND default_overlap IN ('skip', 'queue', 'allow')
    AND default_pool ~ '^[A-Za-z][A-Za-z0-9._-]{0,63}$');

ALTER TABLE tock.jobs ADD COLUMN IF NOT EXISTS inherits text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN tock.jobs.inherits IS
    'The settings this job takes from tock.config''s defaults (max_attempts, timeout, retry_base, retry_cap, overlap, pool).';
-- Jobs from before: a value equal to the built-in default it had then is taken as inherited (the defaults start
-- equal to those, so no job's value changes here).
UPDATE tock.jobs SET inherits = ARRAY(
    SELECT v.field FROM (VALUES ('max_attempts', max_attempts = 1), ('timeout', timeout = interval '1 hour'),
                                ('retry_base', retry_base = interval '10 seconds'), ('retry_cap', retry_cap = interval '10 minutes'),
                                ('overlap', overlap = 'skip'), ('pool', pool = 'default')) v(field, same)
    WHERE v.same);
