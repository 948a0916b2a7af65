-- 0011_trust_boundaries: every job setting has a bound, workers prove who they are, claims that fail are seen.
-- Forward-only, and repeatable: a database that psql brought here already is left as it is.

-- A job's values must stay computable: a timeout of 178,000,000 years passed every check, and at its first claim
-- `now() + timeout` overflowed, so every claim of every worker failed and no other run started. The bounds
-- (tock.check_job_settings and tock.tg_jobs__prepare give the messages; these constraints back them up):
--   timeout in (0, 30 days]; retry_base in (0, 1 day]; retry_cap in [retry_base, 30 days];
--   schedule at most 500 characters (a 48 KB cron list cost 3.5 s of parsing per preview);
--   script at most 1,024 bytes with no control characters (a newline split the log line it was written to);
--   at most 100 arguments of at most 4,096 bytes each, 32 KiB in all.
-- Values from before the bounds are brought inside them rather than left to fail every tick's UPDATE of the job.
DO $$
DECLARE
    v_job record;
BEGIN
    FOR v_job IN
        SELECT name, timeout, retry_base, retry_cap FROM tock.jobs
        WHERE timeout > interval '30 days' OR retry_base > interval '1 day' OR retry_cap > interval '30 days'
    LOOP
        RAISE WARNING 'job %: timeout %, retry base %, retry cap % brought within 30 days, 1 day and 30 days',
            v_job.name, v_job.timeout, v_job.retry_base, v_job.retry_cap;
    END LOOP;
END $$;
UPDATE tock.jobs
SET timeout = least(timeout, interval '30 days'),
    retry_base = least(retry_base, interval '1 day'),
    retry_cap = greatest(least(retry_cap, interval '30 days'), least(retry_base, interval '1 day'))
WHERE timeout > interval '30 days' OR retry_base > interval '1 day' OR retry_cap > interval '30 days';

-- Runs already claimed with an unbounded timeout end at the bound instead.
UPDATE tock.runs SET timeout_at = started_at + interval '30 days'
WHERE status = 'running' AND timeout_at > started_at + interval '30 days';

-- Schedules, scripts and arguments cannot be shortened for their owner: a job past those bounds stops the
-- migration, naming the job, before anything changes (the transaction rolls back).
DO $$
DECLARE
    v_bad text;
BEGIN
    SELECT string_agg(format('%s (%s)', name, problem), '; ' ORDER BY name) INTO v_bad FROM (
        SELECT name, CASE
            WHEN length(schedule) > 500 THEN format('schedule of %s characters, more than 500', length(schedule))
            WHEN octet_length(script) > 1024 OR script ~ '[[:cntrl:]]'
                THEN 'script longer than 1,024 bytes or with control characters'
            ELSE 'more than 100 arguments, one over 4,096 bytes, or over 32 KiB in all' END AS problem
        FROM tock.jobs
        WHERE length(schedule) > 500 OR octet_length(script) > 1024 OR script ~ '[[:cntrl:]]'
           OR cardinality(args) > 100 OR octet_length(array_to_string(args, '')) > 32768
           OR EXISTS (SELECT 1 FROM unnest(args) a WHERE octet_length(a) > 4096)) j;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'jobs outside the new bounds: %', v_bad
            USING ERRCODE = 'check_violation',
                  HINT = 'Shorten them with tock.update_job(job, ''{...}''), then run tock migrate again.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION tock.args_are_bounded(p_args text[]) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT cardinality(p_args) <= 100 AND octet_length(array_to_string(p_args, '')) <= 32768
       AND NOT EXISTS (SELECT 1 FROM unnest(p_args) a WHERE octet_length(a) > 4096)
$$;

ALTER TABLE tock.jobs
    DROP CONSTRAINT IF EXISTS jobs_timeout_is_at_most_30_days,
    DROP CONSTRAINT IF EXISTS jobs_retry_base_is_at_most_a_day,
    DROP CONSTRAINT IF EXISTS jobs_retry_cap_is_at_most_30_days,
    DROP CONSTRAINT IF EXISTS jobs_schedule_is_at_most_500_characters,
    DROP CONSTRAINT IF EXISTS jobs_script_is_plain_text,
    DROP CONSTRAINT IF EXISTS jobs_args_are_bounded,
    ADD CONSTRAINT jobs_timeout_is_at_most_30_days CHECK (timeout <= interval '30 days'),
    ADD CONSTRAINT jobs_retry_base_is_at_most_a_day CHECK (retry_base <= interval '1 day'),
    ADD CONSTRAINT jobs_retry_cap_is_at_most_30_days CHECK (retry_cap <= interval '30 days'),
    ADD CONSTRAINT jobs_schedule_is_at_most_500_characters CHECK (length(schedule) <= 500),
    ADD CONSTRAINT jobs_script_is_plain_text CHECK (octet_length(script) <= 1024 AND script !~ '[[:cntrl:]]'),
    ADD CONSTRAINT jobs_args_are_bounded CHECK (tock.args_are_bounded(args));

-- A worker proves its identity with a secret it chose at registration (tock.register_worker keeps only its
-- SHA-256): a tock_worker member could finish, heartbeat or hand back another worker's runs by passing its id.
ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS lease_token_hash bytea;
COMMENT ON COLUMN tock.workers.lease_token_hash IS
    'SHA-256 of the secret lease token the worker registered with; its calls must present the token.';

-- A worker whose claims fail says so with its heartbeat, so /api/v1/health and tock.worker_overview show it.
ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS claim_error text, ADD COLUMN IF NOT EXISTS claim_failing_since timestamptz;
COMMENT ON COLUMN tock.workers.claim_error IS
    'The error of the worker''s last claim while its claims keep failing (NULL once one succeeds).';
