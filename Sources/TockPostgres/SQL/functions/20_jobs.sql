-- Jobs: validation and next fire time live in a trigger, so psql INSERTs obey the same rules as the CLI.

-- A duration as plain seconds, above zero and at most p_most seconds; raises 22023 naming p_field otherwise.
CREATE OR REPLACE FUNCTION tock.bounded_seconds(p_field text, p_value interval, p_most int)
RETURNS interval LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_seconds constant numeric := extract(epoch FROM p_value);
BEGIN
    IF v_seconds IS NULL OR v_seconds <= 0 OR v_seconds > p_most THEN
        PERFORM tock.raise_invalid(p_field, format('%s: a duration must be longer than zero and at most %s',
                                                   coalesce(p_value::text, 'NULL'),
                                                   CASE p_most WHEN 86400 THEN 'a day' ELSE (p_most / 86400) || ' days' END));
    END IF;
    RETURN make_interval(secs => v_seconds::float8);
END $$;

-- BEFORE INSERT OR UPDATE: parse the schedule, canonicalise the zone, keep next_run_at in step.
CREATE OR REPLACE FUNCTION tock.tg_jobs__prepare()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_schedule_changed boolean;
BEGIN
    NEW.schedule := btrim(NEW.schedule);
    NEW.timezone := tock.canonical_timezone(NEW.timezone);
    IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z][A-Za-z0-9._-]{0,99}$' THEN
        PERFORM tock.raise_invalid('name', format(
            '%L is not a job name (start with a letter; then letters, digits, ''.'', ''_'' or ''-''; at most 100)',
            NEW.name));
    END IF;
    NEW.http := tock.checked_http(NEW.http);
    IF NEW.http IS NOT NULL AND NEW.script IS NOT NULL THEN
        PERFORM tock.raise_invalid('script', 'a job runs a script or sends an HTTP request (http), not both');
    END IF;
    IF NEW.http IS NOT NULL AND cardinality(NEW.args) > 0 THEN
        PERFORM tock.raise_invalid('args', 'an HTTP job takes no arguments: its request is in http');
    END IF;
    IF NEW.http IS NULL AND (NEW.script IS NULL OR NEW.script = '' OR NEW.script ~ '^/' OR NEW.script ~ '(^|/)\.\.(/|$)') THEN
        PERFORM tock.raise_invalid('script', format(
            'script %L must be a path relative to the worker''s scripts directory, without ''..''', NEW.script));
    END IF;
    IF octet_length(NEW.script) > 1024 OR NEW.script ~ '[[:cntrl:]]' THEN
        PERFORM tock.raise_invalid('script', format(
            'script %L must be at most 1,024 bytes, without control characters (newlines, tabs, escapes)', left(NEW.script, 60)));
    END IF;
    NEW.args := coalesce(NEW.args, '{}');
    IF cardinality(NEW.args) > 100 THEN
        PERFORM tock.raise_invalid('args', format('%s arguments; a job takes at most 100', cardinality(NEW.args)));
    END IF;
    IF NOT tock.args_are_bounded(NEW.args) THEN
        PERFORM tock.raise_invalid('args', 'must be a list of text without NULLs, each at most 4,096 bytes, 32 KiB in all');
    END IF;
    NEW.params := tock.checked_param_defs(NEW.params);
    -- A job with parameters puts them into its arguments where they say {{name}}: each must name one.
    IF NEW.params IS NOT NULL AND cardinality(tock.unknown_placeholders(NEW.args, NEW.params)) > 0 THEN
        PERFORM tock.raise_invalid('args', format('%s names no parameter of the job; it declares %s',
            (SELECT string_agg('{{' || u || '}}', ', ') FROM unnest(tock.unknown_placeholders(NEW.args, NEW.params)) u),
            (SELECT string_agg(d ->> 'name', ', ') FROM jsonb_array_elements(NEW.params) d)));
    END IF;
    -- A scheduled or chained run takes the defaults: a parameter that is required needs one.
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(NEW.params, '[]')) d WHERE d ? 'required' AND NOT d ? 'default')
       AND (NEW.schedule <> 'manual' OR EXISTS (SELECT 1 FROM tock.hooks h WHERE h.run_job_id = NEW.id)) THEN
        PERFORM tock.raise_invalid('params', format(
            'parameter %s is required and has no default, but the job %s, whose runs take the defaults: give it a default',
            (SELECT d ->> 'name' FROM jsonb_array_elements(NEW.params) d WHERE d ? 'required' AND NOT d ? 'default' LIMIT 1),
            CASE WHEN NEW.schedule <> 'manual' THEN format('runs on a schedule (%s)', NEW.schedule)
                 ELSE 'runs after another (a chain hook)' END));
    END IF;
    NEW.env := tock.checked_job_env(NEW.env);
    NEW.secrets := tock.checked_job_secrets(NEW.secrets, NEW.env);
    NEW.description := nullif(btrim(NEW.description), '');
    IF length(NEW.description) > 2000 OR NEW.description ~ '[\u0001-\u0008\u000b-\u001f\u007f-\u009f]' THEN
        PERFORM tock.raise_invalid('description', 'a description has at most 2,000 characters and no control characters but tab and newline');
    END IF;
    -- Durations become plain seconds: PostgreSQL compares intervals as if a month were 30 days but adds months
    -- first, so '12000000 mon -359999999 days' would pass as 1 day and overflow now() + timeout at the claim.
    NEW.timeout := tock.bounded_seconds('timeout', NEW.timeout, 2592000);
    NEW.retry_base := tock.bounded_seconds('retry_base', NEW.retry_base, 86400);
    NEW.retry_cap := tock.bounded_seconds('retry_cap', NEW.retry_cap, 2592000);
    v_schedule_changed := TG_OP = 'INSERT'
        OR NEW.schedule IS DISTINCT FROM OLD.schedule
        OR NEW.timezone IS DISTINCT FROM OLD.timezone
        OR NEW.enabled IS DISTINCT FROM OLD.enabled;
    IF v_schedule_changed THEN
        NEW.spec := tock.parse_schedule(NEW.schedule);
        NEW.schedule_description := tock.describe_spec(NEW.spec);
        IF TG_OP = 'UPDATE' AND NEW.schedule IS DISTINCT FROM OLD.schedule THEN
            NEW.anchor_at := now();  -- a new interval keeps its cadence from the edit
        END IF;
        NEW.next_run_at := CASE WHEN NEW.enabled
            THEN tock.next_fire_time(NEW.spec, NEW.timezone, now(), NEW.anchor_at) END;
        IF TG_OP = 'UPDATE' THEN
            -- A fire time tick() enqueued ahead (p_lookahead) and not yet due belongs to the old schedule.
            DELETE FROM tock.runs
            WHERE job_id = NEW.id AND trigger = 'schedule' AND status = 'pending' AND run_after > now();
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

-- Not on next_run_at alone: tick() moves it for every due job and needs no re-validation.
CREATE OR REPLACE TRIGGER jobs_prepare
    BEFORE INSERT OR UPDATE OF name, script, args, schedule, timezone, enabled, priority, timeout, max_attempts,
        overlap, retry_base, retry_cap, params, description, env, secrets, http ON tock.jobs
    FOR EACH ROW EXECUTE FUNCTION tock.tg_jobs__prepare();

-- NOTIFY the channel named by the trigger's argument. Empty payloads collapse within a transaction, so a batch
-- of rows wakes listeners once.
CREATE OR REPLACE FUNCTION tock.tg_notify()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END $$;

-- A job that became due earlier than before (created, edited, resumed) wakes the scheduler to re-plan its sleep.
-- tick() only moves next_run_at later, so the scheduler's own updates stay quiet.

CREATE OR REPLACE TRIGGER jobs_notify_inserted
    AFTER INSERT ON tock.jobs
    FOR EACH ROW WHEN (NEW.next_run_at IS NOT NULL)
    EXECUTE FUNCTION tock.tg_notify('tock_jobs');

CREATE OR REPLACE TRIGGER jobs_notify_earlier
    AFTER UPDATE OF next_run_at, schedule, timezone, enabled ON tock.jobs
    FOR EACH ROW WHEN (NEW.next_run_at IS NOT NULL
                       AND (OLD.next_run_at IS NULL OR NEW.next_run_at < OLD.next_run_at))
    EXECUTE FUNCTION tock.tg_notify('tock_jobs');

-- A job by name, or by id when p_job is all digits; raises SQLSTATE P0002 naming the job.
CREATE OR REPLACE FUNCTION tock.find_job(p_job text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id bigint;
BEGIN
    IF p_job ~ '^[0-9]{1,18}$' THEN
        SELECT id INTO v_id FROM tock.jobs WHERE id = p_job::bigint;
    ELSE
        SELECT id INTO v_id FROM tock.jobs WHERE name = p_job;
    END IF;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'job: unknown job %', quote_literal(coalesce(p_job, ''))
            USING ERRCODE = 'no_data_found', COLUMN = 'job',
                  HINT = 'SELECT name FROM tock.job_overview lists the jobs';
    END IF;
    RETURN v_id;
END $$;
COMMENT ON FUNCTION tock.find_job(text) IS
    'A job''s id from its name or its id as text; raises no_data_found (P0002) naming the job when there is none.';

-- Creates a job. Fields not given take their defaults: max_attempts, timeout, retry_base, retry_cap, overlap and pool
-- the fleet's (tock.config, tock.set_config), which the job goes on inheriting (tock.jobs.inherits); the others the
-- table's.
DROP FUNCTION IF EXISTS tock.create_job(text, text, text[], text, text, int, interval, int, text, boolean);
DROP FUNCTION IF EXISTS tock.create_job(text, text, text[], text, text, int, interval, int, text, boolean, interval, interval, text);
DROP FUNCTION IF EXISTS tock.create_job(text, text, text[], text, text, int, interval, int, text, boolean, interval, interval, text, text);
DROP FUNCTION IF EXISTS tock.create_job(text, text, text[], text, text, int, interval, int, text, boolean, interval, interval, text, text, int, text);
DROP FUNCTION IF EXISTS tock.create_job(text, text, text[], text, text, int, interval, int, text, boolean, interval, interval, text, text, int, text, jsonb, text);
DROP FUNCTION IF EXISTS tock.create_job(text, text, text[], text, text, int, interval, int, text, boolean, interval, interval, text, text, int, text, jsonb, text, jsonb, text[]);
CREATE OR REPLACE FUNCTION tock.create_job(
    p_name text,
    p_script text,
    p_args text[] DEFAULT '{}',
    p_schedule text DEFAULT 'manual',
    p_timezone text DEFAULT 'UTC',
    p_priority int DEFAULT 50,
    p_timeout interval DEFAULT NULL,
    p_max_attempts int DEFAULT NULL,
    p_overlap text DEFAULT NULL,
    p_enabled boolean DEFAULT true,
    p_retry_base interval DEFAULT NULL,
    p_retry_cap interval DEFAULT NULL,
    p_misfire text DEFAULT 'run_once',
    p_pool text DEFAULT NULL,
    p_max_running int DEFAULT NULL,
    p_rate text DEFAULT NULL,
    p_params jsonb DEFAULT NULL,
    p_description text DEFAULT NULL,
    p_env jsonb DEFAULT NULL,
    p_secrets text[] DEFAULT NULL,
    p_http jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_rate record;
    v_config tock.config%ROWTYPE;
BEGIN
    PERFORM tock.check_job_settings(p_priority, p_timeout, p_max_attempts, p_overlap, p_misfire, p_pool, p_max_running);
    v_rate := tock.parse_rate(p_rate);
    -- FOR SHARE: a tock.set_config under way commits first (and this job then gets its value), or waits for this
    -- job to commit (and then writes its value into it).
    SELECT * INTO v_config FROM tock.config FOR SHARE;
    INSERT INTO tock.jobs (name, script, args, schedule, timezone, priority, timeout, max_attempts, overlap, enabled,
                           retry_base, retry_cap, misfire, pool, max_running, rate_limit, rate_period, inherits, params,
                           description, env, secrets, http)
    -- NULL means 'the default', so callers can pass every parameter positionally.
    VALUES (p_name, p_script, coalesce(p_args, '{}'), coalesce(p_schedule, 'manual'), coalesce(p_timezone, 'UTC'),
            coalesce(p_priority, 50), coalesce(p_timeout, v_config.default_timeout),
            coalesce(p_max_attempts, v_config.default_max_attempts), coalesce(p_overlap, v_config.default_overlap),
            coalesce(p_enabled, true), coalesce(p_retry_base, v_config.default_retry_base),
            greatest(coalesce(p_retry_cap, v_config.default_retry_cap), coalesce(p_retry_base, v_config.default_retry_base)),
            coalesce(p_misfire, 'run_once'), coalesce(p_pool, v_config.default_pool), p_max_running, v_rate.rate_limit,
            v_rate.rate_period,
            ARRAY(SELECT v.field FROM (VALUES ('max_attempts', p_max_attempts IS NULL), ('timeout', p_timeout IS NULL),
                                              ('retry_base', p_retry_base IS NULL), ('retry_cap', p_retry_cap IS NULL),
                                              ('overlap', p_overlap IS NULL), ('pool', p_pool IS NULL)) v(field, inherited)
                  WHERE v.inherited ORDER BY v.field),
            p_params, p_description, p_env, p_secrets, nullif(p_http, 'null'))
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'name: a job named % already exists', quote_literal(p_name)
        USING ERRCODE = 'unique_violation', COLUMN = 'name', CONSTRAINT = 'jobs_name_is_unique';
END $$;
COMMENT ON FUNCTION tock.create_job(text, text, text[], text, text, int, interval, int, text, boolean, interval, interval, text, text, int, text, jsonb, text, jsonb, text[], jsonb) IS
    'Creates a job and returns its id; bad input raises SQLSTATE 22023 naming the field, a duplicate name 23505.';

-- The range rules of a job's settings, with messages that name the field (the CHECKs back them up). Durations
-- are bounded where they are stored, by tock.tg_jobs__prepare (tock.bounded_seconds).
DROP FUNCTION IF EXISTS tock.check_job_settings(int, interval, int, text);
DROP FUNCTION IF EXISTS tock.check_job_settings(int, interval, int, text, text, interval, interval);
DROP FUNCTION IF EXISTS tock.check_job_settings(int, interval, int, text, text);
-- A pool's name: a job's (jobs_pool_is_valid, migration 0017) and each of a worker's (tock.register_worker).
CREATE OR REPLACE FUNCTION tock.is_pool_name(p_pool text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_pool ~ '^[A-Za-z][A-Za-z0-9._-]{0,63}$'
$$;
DROP FUNCTION IF EXISTS tock.check_job_settings(int, interval, int, text, text, text);
CREATE OR REPLACE FUNCTION tock.check_job_settings(
    p_priority int, p_timeout interval, p_max_attempts int, p_overlap text, p_misfire text DEFAULT NULL,
    p_pool text DEFAULT NULL, p_max_running int DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_max_running IS NOT NULL AND p_max_running NOT BETWEEN 1 AND 100000 THEN
        PERFORM tock.raise_invalid('max_running', format('%s is out of range 1-100,000', p_max_running));
    END IF;
    IF p_pool IS NOT NULL AND NOT tock.is_pool_name(p_pool) THEN
        PERFORM tock.raise_invalid('pool', format(
            '%L: a pool''s name starts with a letter and has up to 64 letters, digits, ''.'', ''_'' or ''-''', left(p_pool, 100)));
    END IF;
    IF p_misfire IS NOT NULL AND p_misfire NOT IN ('run_once', 'skip') THEN
        PERFORM tock.raise_invalid('misfire', format('%L is not run_once or skip', p_misfire));
    END IF;
    IF p_priority IS NOT NULL AND p_priority NOT BETWEEN 0 AND 100 THEN
        PERFORM tock.raise_invalid('priority', format('%s is out of range 0-100', p_priority));
    END IF;
    IF p_timeout IS NOT NULL AND p_timeout <= interval '0' THEN
        PERFORM tock.raise_invalid('timeout', format('%s must be longer than zero', p_timeout));
    END IF;
    IF p_max_attempts IS NOT NULL AND p_max_attempts NOT BETWEEN 1 AND 100 THEN
        PERFORM tock.raise_invalid('max_attempts', format('%s is out of range 1-100', p_max_attempts));
    END IF;
    IF p_overlap IS NOT NULL AND p_overlap NOT IN ('skip', 'queue', 'allow') THEN
        PERFORM tock.raise_invalid('overlap', format('%L is not skip, queue or allow', p_overlap));
    END IF;
END $$;

-- The fields a job's JSON may carry and the JSON type each must have. Used by create_job_json and update_job,
-- so the API and psql users get the same messages ("priority: expected a whole number, got \"high\"").
CREATE OR REPLACE FUNCTION tock.check_job_json(p_job jsonb, p_required text[] DEFAULT '{}')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_types constant jsonb := '{"name": "string", "script": "string", "args": "array", "schedule": "string",
        "timezone": "string", "priority": "integer", "timeout": "string", "timeout_seconds": "number",
        "max_attempts": "integer", "overlap": "string", "misfire": "string", "enabled": "boolean",
        "retry_base_seconds": "number", "retry_cap_seconds": "number", "pool": "string", "max_running": "integer",
        "rate": "string", "params": "declarations", "description": "string", "env": "object", "secrets": "array",
        "http": "object"}';
    v_key text;
    v_value jsonb;
    v_expected text;
    v_unknown text;
BEGIN
    IF jsonb_typeof(p_job) IS DISTINCT FROM 'object' THEN
        PERFORM tock.raise_invalid('body', 'expected a JSON object of job fields');
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown FROM jsonb_object_keys(p_job) k WHERE NOT v_types ? k;
    IF v_unknown IS NOT NULL THEN
        PERFORM tock.raise_invalid(split_part(v_unknown, ', ', 1), format('unknown field(s) %s; known fields: %s',
            v_unknown, (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(v_types) k)));
    END IF;
    FOREACH v_key IN ARRAY p_required LOOP
        IF NOT p_job ? v_key OR jsonb_typeof(p_job -> v_key) = 'null' THEN
            PERFORM tock.raise_invalid(v_key, 'is required');
        END IF;
    END LOOP;
    FOR v_key, v_value IN SELECT * FROM jsonb_each(p_job) LOOP
        v_expected := v_types ->> v_key;
        CONTINUE WHEN jsonb_typeof(v_value) = 'null';
        IF (v_expected = 'integer' AND (jsonb_typeof(v_value) <> 'number' OR v_value::text::numeric <> trunc(v_value::text::numeric)
                                        OR abs(v_value::text::numeric) > 2147483647))
           OR (v_expected NOT IN ('integer', 'declarations') AND jsonb_typeof(v_value) <> v_expected)
           OR (v_expected = 'declarations' AND jsonb_typeof(v_value) <> 'array')
           OR (v_expected = 'array' AND EXISTS (SELECT 1 FROM jsonb_array_elements(v_value) e WHERE jsonb_typeof(e) <> 'string')) THEN
            PERFORM tock.raise_invalid(v_key, format('expected %s, got %s', CASE v_expected
                WHEN 'integer' THEN 'a whole number' WHEN 'number' THEN 'a number' WHEN 'boolean' THEN 'true or false'
                WHEN 'array' THEN 'an array of strings' WHEN 'declarations' THEN 'an array of parameter declarations'
                WHEN 'object' THEN 'an object of names and values'
                ELSE 'a string' END, left(v_value::text, 60)));
        END IF;
    END LOOP;
END $$;

-- A duration in seconds from a job's JSON (NULL when absent), refusing what an interval cannot hold.
CREATE OR REPLACE FUNCTION tock.json_seconds(p_job jsonb, p_field text)
RETURNS interval LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_seconds numeric := (p_job ->> p_field)::numeric;
BEGIN
    IF v_seconds IS NOT NULL AND (v_seconds <= 0 OR v_seconds > 315360000) THEN
        PERFORM tock.raise_invalid(p_field, format('%s is not between 0 and 10 years of seconds', v_seconds));
    END IF;
    RETURN make_interval(secs => v_seconds::float8);
END $$;

-- Creates a job from a JSON object (the API's POST /api/v1/jobs): name and script required, other fields as in
-- tock.create_job; unknown fields and wrong types are refused, naming the field.
CREATE OR REPLACE FUNCTION tock.create_job_json(p_job jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tock.check_job_json(p_job, ARRAY['name']);
    IF (coalesce(jsonb_typeof(p_job -> 'script'), 'null') = 'null') = (coalesce(jsonb_typeof(p_job -> 'http'), 'null') = 'null') THEN
        PERFORM tock.raise_invalid('script', 'give script (a path in the scripts directory) or http (a request), one of them');
    END IF;
    IF p_job ? 'timeout' AND p_job ? 'timeout_seconds' THEN
        PERFORM tock.raise_invalid('timeout', 'give timeout or timeout_seconds, not both');
    END IF;
    RETURN tock.create_job(
        p_name => p_job ->> 'name', p_script => p_job ->> 'script',
        p_args => ARRAY(SELECT jsonb_array_elements_text(coalesce(p_job -> 'args', '[]'))),
        p_schedule => p_job ->> 'schedule', p_timezone => p_job ->> 'timezone',
        p_priority => (p_job ->> 'priority')::int,
        p_timeout => coalesce(tock.json_seconds(p_job, 'timeout_seconds'), tock.parse_timeout(p_job ->> 'timeout')),
        p_max_attempts => (p_job ->> 'max_attempts')::int, p_overlap => p_job ->> 'overlap',
        p_enabled => (p_job ->> 'enabled')::boolean,
        p_retry_base => tock.json_seconds(p_job, 'retry_base_seconds'),
        p_retry_cap => tock.json_seconds(p_job, 'retry_cap_seconds'),
        p_misfire => p_job ->> 'misfire', p_pool => p_job ->> 'pool',
        p_max_running => tock.json_max_running(p_job), p_rate => p_job ->> 'rate',
        p_params => nullif(p_job -> 'params', 'null'), p_description => p_job ->> 'description',
        p_env => nullif(p_job -> 'env', 'null'),
        p_secrets => CASE WHEN jsonb_typeof(p_job -> 'secrets') = 'array'
                          THEN ARRAY(SELECT jsonb_array_elements_text(p_job -> 'secrets')) END,
        p_http => p_job -> 'http');
END $$;
COMMENT ON FUNCTION tock.create_job_json(jsonb) IS
    'Creates a job from a JSON object ({"name", "script", "schedule", …}) and returns its id; bad fields raise 22023 naming the field.';

-- A timeout given as text ('10 minutes'), or NULL.
CREATE OR REPLACE FUNCTION tock.parse_timeout(p_text text)
RETURNS interval LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN p_text::interval;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
    PERFORM tock.raise_invalid('timeout', format('%L is not a duration (use e.g. ''10 minutes'')', p_text));
END $$;

-- Changes the fields present in p_changes (a JSON object with the fields of tock.create_job_json; 'timeout'
-- may also be text such as '10 minutes'); absent fields keep their value. Unknown fields are refused.
CREATE OR REPLACE FUNCTION tock.update_job(p_job text, p_changes jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id constant bigint := tock.find_job(p_job);
    v_timeout interval;
    v_retry_base interval;
    v_retry_cap interval;
    v_rate record;
    v_setting record;
    v_inherit text[] := '{}';
    v_own text[] := '{}';
BEGIN
    PERFORM tock.check_job_json(p_changes);
    IF p_changes ? 'timeout' AND p_changes ? 'timeout_seconds' THEN
        PERFORM tock.raise_invalid('timeout', 'give timeout or timeout_seconds, not both');
    END IF;
    v_rate := tock.parse_rate(p_changes ->> 'rate');
    -- A setting the fleet has a default for, given as null, goes back to inheriting it; given a value, it is the
    -- job's own from then on.
    FOR v_setting IN
        SELECT * FROM (VALUES ('max_attempts', 'max_attempts'), ('timeout', 'timeout'), ('timeout_seconds', 'timeout'),
                              ('retry_base_seconds', 'retry_base'), ('retry_cap_seconds', 'retry_cap'),
                              ('overlap', 'overlap'), ('pool', 'pool')) s(key, field)
        WHERE p_changes ? s.key
    LOOP
        IF jsonb_typeof(p_changes -> v_setting.key) = 'null' THEN
            v_inherit := v_inherit || v_setting.field;
        ELSE
            v_own := v_own || v_setting.field;
        END IF;
    END LOOP;
    v_timeout := coalesce(tock.json_seconds(p_changes, 'timeout_seconds'), tock.parse_timeout(p_changes ->> 'timeout'));
    v_retry_base := tock.json_seconds(p_changes, 'retry_base_seconds');
    v_retry_cap := tock.json_seconds(p_changes, 'retry_cap_seconds');
    PERFORM tock.check_job_settings((p_changes ->> 'priority')::int, v_timeout,
                                    (p_changes ->> 'max_attempts')::int, p_changes ->> 'overlap', p_changes ->> 'misfire',
                                    p_changes ->> 'pool', tock.json_max_running(p_changes));
    -- The defaults as a tock.set_config under way leaves them (see tock.create_job).
    PERFORM 1 FROM tock.config FOR SHARE;
    UPDATE tock.jobs SET
        name = coalesce(p_changes ->> 'name', name),
        -- A script given makes it a script job again, an http given an HTTP job.
        script = CASE WHEN p_changes ->> 'script' IS NOT NULL THEN p_changes ->> 'script'
                      WHEN coalesce(jsonb_typeof(p_changes -> 'http'), 'null') <> 'null' THEN NULL ELSE script END,
        http = CASE WHEN p_changes ->> 'script' IS NOT NULL THEN NULL
                    WHEN coalesce(jsonb_typeof(p_changes -> 'http'), 'null') <> 'null' THEN p_changes -> 'http' ELSE http END,
        args = CASE WHEN jsonb_typeof(p_changes -> 'args') = 'array'
                    THEN ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'args')) ELSE args END,
        schedule = coalesce(p_changes ->> 'schedule', schedule),
        timezone = coalesce(p_changes ->> 'timezone', timezone),
        priority = coalesce((p_changes ->> 'priority')::smallint, priority),
        timeout = CASE WHEN 'timeout' = ANY (v_inherit) THEN c.default_timeout ELSE coalesce(v_timeout, timeout) END,
        max_attempts = CASE WHEN 'max_attempts' = ANY (v_inherit) THEN c.default_max_attempts
                            ELSE coalesce((p_changes ->> 'max_attempts')::int, max_attempts) END,
        overlap = CASE WHEN 'overlap' = ANY (v_inherit) THEN c.default_overlap ELSE coalesce(p_changes ->> 'overlap', overlap) END,
        misfire = coalesce(p_changes ->> 'misfire', misfire),
        pool = CASE WHEN 'pool' = ANY (v_inherit) THEN c.default_pool ELSE coalesce(p_changes ->> 'pool', pool) END,
        enabled = coalesce((p_changes ->> 'enabled')::boolean, enabled),
        retry_base = CASE WHEN 'retry_base' = ANY (v_inherit) THEN c.default_retry_base ELSE coalesce(v_retry_base, retry_base) END,
        retry_cap = greatest(
            CASE WHEN 'retry_cap' = ANY (v_inherit) THEN c.default_retry_cap ELSE coalesce(v_retry_cap, retry_cap) END,
            CASE WHEN 'retry_base' = ANY (v_inherit) THEN c.default_retry_base ELSE coalesce(v_retry_base, retry_base) END),
        inherits = ARRAY(SELECT DISTINCT f FROM unnest(inherits || v_inherit) f WHERE NOT f = ANY (v_own) ORDER BY f),
        -- Present as null: the limit goes.
        max_running = CASE WHEN p_changes ? 'max_running' THEN tock.json_max_running(p_changes) ELSE max_running END,
        rate_limit = CASE WHEN p_changes ? 'rate' THEN v_rate.rate_limit ELSE rate_limit END,
        rate_period = CASE WHEN p_changes ? 'rate' THEN v_rate.rate_period ELSE rate_period END,
        -- Present as null: the job takes none, or has none.
        params = CASE WHEN p_changes ? 'params' THEN nullif(p_changes -> 'params', 'null') ELSE params END,
        description = CASE WHEN p_changes ? 'description' THEN p_changes ->> 'description' ELSE description END,
        env = CASE WHEN p_changes ? 'env' THEN nullif(p_changes -> 'env', 'null') ELSE env END,
        secrets = CASE WHEN p_changes ? 'secrets'
                       THEN CASE WHEN jsonb_typeof(p_changes -> 'secrets') = 'array'
                                 THEN ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'secrets')) END
                       ELSE secrets END
    FROM tock.config c
    WHERE tock.jobs.id = v_id;
    IF p_changes ? 'rate' AND v_rate.rate_limit IS NULL THEN
        DELETE FROM tock.limit_starts WHERE scope = 'job:' || v_id;
    END IF;
    -- A limit raised or removed may let waiting runs start: wake the workers.
    IF p_changes ? 'max_running' OR p_changes ? 'rate' THEN
        PERFORM pg_notify('tock_runs', '');
    END IF;
    RETURN v_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'name: a job named % already exists', quote_literal(p_changes ->> 'name')
        USING ERRCODE = 'unique_violation', COLUMN = 'name', CONSTRAINT = 'jobs_name_is_unique';
END $$;
COMMENT ON FUNCTION tock.update_job(text, jsonb) IS 'Changes the given fields of a job (by name or id) and returns its id.';

-- Pause: the schedule stops (next_run_at becomes NULL); run-now still works. Resume: the next fire time after now.
CREATE OR REPLACE FUNCTION tock.set_job_enabled(p_job text, p_enabled boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id constant bigint := tock.find_job(p_job);
BEGIN
    UPDATE tock.jobs SET enabled = p_enabled WHERE id = v_id AND enabled IS DISTINCT FROM p_enabled;
    RETURN v_id;
END $$;
COMMENT ON FUNCTION tock.set_job_enabled(text, boolean) IS
    'Pauses (false) or resumes (true) a job by name or id; returns its id.';

CREATE OR REPLACE FUNCTION tock.pause_job(p_job text) RETURNS bigint LANGUAGE sql AS $$
    SELECT tock.set_job_enabled(p_job, false)
$$;
COMMENT ON FUNCTION tock.pause_job(text) IS
    'Pauses a job: no scheduled fire times run; run-now still works. Returns its id.';
CREATE OR REPLACE FUNCTION tock.resume_job(p_job text) RETURNS bigint LANGUAGE sql AS $$
    SELECT tock.set_job_enabled(p_job, true)
$$;
COMMENT ON FUNCTION tock.resume_job(text) IS
    'Resumes a paused job from its next fire time after now. Returns its id.';

-- A deleted job's runs go with it, as the foreign key's cascade did (see migration 0010): after the job's row is
-- locked and gone, so a run enqueued meanwhile either committed first (and is deleted here) or fails for want of
-- the job (tock.tg_runs__inserted). One look into the job index of the runs in flight and of each history
-- partition; the leases and live output of its running runs go too.
CREATE OR REPLACE FUNCTION tock.tg_jobs__deleted()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tock.finished_runs WHERE job_id = OLD.id;
    DELETE FROM tock.limit_starts WHERE scope = 'job:' || OLD.id;
    WITH gone AS (DELETE FROM tock.runs WHERE job_id = OLD.id RETURNING id, worker_id)
    , live AS (DELETE FROM tock.run_output o WHERE o.run_id IN (SELECT g.id FROM gone g))
    DELETE FROM tock.run_leases l
    WHERE l.worker_id = ANY (ARRAY(SELECT DISTINCT g.worker_id FROM gone g WHERE g.worker_id IS NOT NULL))
      AND l.run_id = ANY (ARRAY(SELECT g.id FROM gone g WHERE g.worker_id IS NOT NULL));
    RETURN NULL;
END $$;
-- A job moved to another pool takes its pending runs along, and that pool's workers are woken for them; its
-- running runs end where they run.
CREATE OR REPLACE FUNCTION tock.tg_jobs__pool_moved()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tock.runs SET pool = NEW.pool WHERE job_id = NEW.id AND status = 'pending' AND pool <> NEW.pool;
    IF FOUND THEN
        PERFORM pg_notify('tock_runs', '');
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER jobs_pool_moved
    AFTER UPDATE OF pool ON tock.jobs
    FOR EACH ROW WHEN (NEW.pool IS DISTINCT FROM OLD.pool)
    EXECUTE FUNCTION tock.tg_jobs__pool_moved();

CREATE OR REPLACE TRIGGER jobs_delete_runs
    AFTER DELETE ON tock.jobs
    FOR EACH ROW EXECUTE FUNCTION tock.tg_jobs__deleted();

-- Deletes a job and its history. Returns the id it deleted.
CREATE OR REPLACE FUNCTION tock.delete_job(p_job text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id constant bigint := tock.find_job(p_job);
BEGIN
    DELETE FROM tock.jobs WHERE id = v_id;
    RETURN v_id;
END $$;
COMMENT ON FUNCTION tock.delete_job(text) IS
    'Deletes a job with its history and its runs in flight (a worker''s later report of one changes nothing). Returns its id.';
