-- 0011_trust_boundaries: every job setting has a bound, workers prove who they are, claims that fail are seen.
-- Forward-only, and repeatable: a database that psql brought here already is left as it is.

-- It locks tock.jobs and tock.workers: a session holding either for long makes it fail with a clear error rather
-- than queue every claim behind it.
SET LOCAL lock_timeout = '30s';

-- A job's values must stay computable: a timeout of 178,000,000 years passed every check, and at its first claim
-- `now() + timeout` overflowed, so every claim of every worker failed and no other run started. The bounds
-- (tock.check_job_settings and tock.tg_jobs__prepare give the messages; these constraints back them up):
--   timeout in (0, 30 days]; retry_base in (0, 1 day]; retry_cap in [retry_base, 30 days];
--   schedule at most 500 characters (a 48 KB cron list cost 3.5 s of parsing per preview);
--   script at most 1,024 bytes with no control characters (a newline split the log line it was written to);
--   at most 100 arguments of at most 4,096 bytes each, 32 KiB in all.
-- Durations are kept as plain seconds: PostgreSQL compares intervals as if a month were 30 days, but adds the
-- months first, so '12000000 mon -359999999 days' compared as 1 day and still overflowed now() + timeout.
-- Values from before the bounds are brought inside them rather than left to fail every tick's UPDATE of the job.
DO $$
DECLARE
    v_job record;
BEGIN
    FOR v_job IN
        SELECT name, timeout, retry_base, retry_cap FROM tock.jobs
        WHERE extract(epoch FROM timeout) > 2592000 OR extract(epoch FROM retry_base) > 86400
           OR extract(epoch FROM retry_cap) > 2592000
    LOOP
        RAISE WARNING 'job %: timeout %, retry base %, retry cap % brought within 30 days, 1 day and 30 days',
            v_job.name, v_job.timeout, v_job.retry_base, v_job.retry_cap;
    END LOOP;
END $$;
UPDATE tock.jobs j
SET timeout = n.timeout, retry_base = n.retry_base, retry_cap = greatest(n.retry_cap, n.retry_base)
FROM (SELECT id,
             make_interval(secs => least(extract(epoch FROM timeout), 2592000)::float8) AS timeout,
             make_interval(secs => least(extract(epoch FROM retry_base), 86400)::float8) AS retry_base,
             make_interval(secs => least(extract(epoch FROM retry_cap), 2592000)::float8) AS retry_cap
      FROM tock.jobs) n
WHERE j.id = n.id
  AND (j.timeout::text, j.retry_base::text, j.retry_cap::text)
      IS DISTINCT FROM (n.timeout::text, n.retry_base::text, greatest(n.retry_cap, n.retry_base)::text);

-- Runs already claimed with an unbounded timeout end at the bound instead.
UPDATE tock.runs SET timeout_at = started_at + interval '30 days'
WHERE status = 'running' AND timeout_at > started_at + interval '30 days';

-- A list of text a worker can decode and pass to exec: one dimension from 1, no NULL, bounded.
CREATE OR REPLACE FUNCTION tock.args_are_bounded(p_args text[]) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_args IS NULL THEN false
                WHEN array_ndims(p_args) IS NULL THEN true
                WHEN array_ndims(p_args) <> 1 OR array_lower(p_args, 1) <> 1 THEN false
                ELSE array_position(p_args, NULL) IS NULL AND cardinality(p_args) <= 100
                     AND octet_length(array_to_string(p_args, '')) <= 32768
                     AND NOT EXISTS (SELECT 1 FROM unnest(p_args) a WHERE octet_length(a) > 4096) END
$$;

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
            ELSE 'args: a NULL, more than one dimension, more than 100, one over 4,096 bytes, or over 32 KiB in all' END AS problem
        FROM tock.jobs
        WHERE length(schedule) > 500 OR octet_length(script) > 1024 OR script ~ '[[:cntrl:]]'
           OR NOT tock.args_are_bounded(args)) j;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'jobs outside the new bounds: %', v_bad
            USING ERRCODE = 'check_violation',
                  HINT = 'Shorten them with tock.update_job(job, ''{...}''), then run tock migrate again.';
    END IF;
END $$;

ALTER TABLE tock.jobs
    DROP CONSTRAINT IF EXISTS jobs_timeout_is_at_most_30_days,
    DROP CONSTRAINT IF EXISTS jobs_retry_base_is_at_most_a_day,
    DROP CONSTRAINT IF EXISTS jobs_retry_cap_is_at_most_30_days,
    DROP CONSTRAINT IF EXISTS jobs_schedule_is_at_most_500_characters,
    DROP CONSTRAINT IF EXISTS jobs_script_is_plain_text,
    DROP CONSTRAINT IF EXISTS jobs_args_are_bounded,
    DROP CONSTRAINT IF EXISTS jobs_durations_are_seconds,
    ADD CONSTRAINT jobs_timeout_is_at_most_30_days CHECK (timeout <= interval '30 days'),
    ADD CONSTRAINT jobs_retry_base_is_at_most_a_day CHECK (retry_base <= interval '1 day'),
    ADD CONSTRAINT jobs_retry_cap_is_at_most_30_days CHECK (retry_cap <= interval '30 days'),
    ADD CONSTRAINT jobs_schedule_is_at_most_500_characters CHECK (length(schedule) <= 500),
    ADD CONSTRAINT jobs_script_is_plain_text CHECK (octet_length(script) <= 1024 AND script !~ '[[:cntrl:]]'),
    ADD CONSTRAINT jobs_args_are_bounded CHECK (tock.args_are_bounded(args)),
    ADD CONSTRAINT jobs_durations_are_seconds CHECK (
        date_part('day', timeout) = 0 AND date_part('month', timeout) = 0 AND date_part('year', timeout) = 0
        AND date_part('day', retry_base) = 0 AND date_part('month', retry_base) = 0 AND date_part('year', retry_base) = 0
        AND date_part('day', retry_cap) = 0 AND date_part('month', retry_cap) = 0 AND date_part('year', retry_cap) = 0);

-- A worker proves its identity with a secret it chose at registration (tock.register_worker keeps only its
-- SHA-256): a tock_worker member could finish, heartbeat or hand back another worker's runs by passing its id.
ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS lease_token_hash bytea;
COMMENT ON COLUMN tock.workers.lease_token_hash IS
    'SHA-256 of the secret lease token the worker registered with; its calls must present the token.';

-- A worker whose claims fail says so with its heartbeat, so /api/v1/health and tock.worker_overview show it.
ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS claim_error text, ADD COLUMN IF NOT EXISTS claim_failing_since timestamptz;
COMMENT ON COLUMN tock.workers.claim_error IS
    'The error of the worker''s last claim while its claims keep failing (NULL once one succeeds).';

-- The backend that holds a worker's session lock: any login may take an advisory lock, so a lock counts only when
-- the session that took it through tock.hold_worker_session (which needs the lease token) holds it.
ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS session_pid int;
COMMENT ON COLUMN tock.workers.session_pid IS
    'The backend pid of the session holding the worker''s session lock (tock.hold_worker_session).';
