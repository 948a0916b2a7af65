-- Fleet-wide defaults (migration 0019): what a job that leaves a setting out gets, and keeps getting when the default
-- changes. tock.config holds them; each job lists the settings it inherits (tock.jobs.inherits).

-- A duration for people: '90s', '10m', '1h', '1d' (whole units), else seconds.
CREATE OR REPLACE FUNCTION tock.duration_text(p_value interval)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN s % 86400 = 0 THEN (s / 86400)::bigint || 'd'
        WHEN s % 3600 = 0 THEN (s / 3600)::bigint || 'h'
        WHEN s % 60 = 0 THEN (s / 60)::bigint || 'm'
        ELSE trim_scale(s) || 's' END
    FROM (SELECT extract(epoch FROM p_value) AS s) e
    WHERE p_value IS NOT NULL
$$;
COMMENT ON FUNCTION tock.duration_text(interval) IS
    'An interval as the settings write it: 90s, 10m, 2h, 3d.';

-- A duration a setting was given as text: '90s', '10m', '1h30m', '2 days', '00:05:00'; raises naming p_field.
CREATE OR REPLACE FUNCTION tock.parse_duration(p_text text, p_field text)
RETURNS interval LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN btrim(p_text)::interval;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow OR syntax_error THEN
    PERFORM tock.raise_invalid(p_field, format('%L is not a duration (use e.g. 90s, 10m, 1h30m)', left(p_text, 60)));
END $$;

-- Every setting of tock.config as a key and its value for people, with what it is: `tock config show`,
-- GET /api/v1/config.
CREATE OR REPLACE VIEW tock.config_settings AS
SELECT s.key, s.value, s.description
FROM tock.config c
CROSS JOIN LATERAL (VALUES
    ('max_attempts', c.default_max_attempts::text, 'attempts per run of a job that does not set its own (1: no retry)'),
    ('retry_base', tock.duration_text(c.default_retry_base), 'first retry delay, doubling per attempt, of a job that does not set its own'),
    ('retry_cap', tock.duration_text(c.default_retry_cap), 'longest retry delay of a job that does not set its own'),
    ('timeout', tock.duration_text(c.default_timeout), 'how long a run may take, for a job that does not set its own'),
    ('overlap', c.default_overlap, 'skip, queue or allow a fire time while a run is in flight, for a job that does not set its own'),
    ('pool', c.default_pool, 'the pool of a job that does not name one'),
    ('history_retention', tock.duration_text(c.history_retention), 'how long finished runs and their output are kept'),
    ('audit_retention', tock.duration_text(c.audit_retention), 'how long the audit log keeps who changed what (at least 1d)'),
    ('portal_url', c.portal_url, 'the portal''s address, for links to runs in webhook messages (empty: no links)')
) s(key, value, description);
COMMENT ON VIEW tock.config_settings IS 'Fleet-wide settings: the defaults jobs inherit, and the history''s retention.';

-- Sets one fleet-wide setting (a key of tock.config_settings) from text; the jobs that inherit it take the new
-- value in the same transaction. Returns the value as tock.config_settings shows it.
CREATE OR REPLACE FUNCTION tock.set_config(p_key text, p_value text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_number numeric;
    v_interval interval;
BEGIN
    IF p_value IS NULL THEN
        PERFORM tock.raise_invalid(coalesce(p_key, 'key'), 'give a value');
    END IF;
    CASE p_key
    WHEN 'max_attempts' THEN
        IF btrim(p_value) !~ '^[0-9]{1,9}$' THEN
            PERFORM tock.raise_invalid('max_attempts', format('%L is not a whole number', left(p_value, 60)));
        END IF;
        v_number := btrim(p_value)::numeric;
        IF v_number NOT BETWEEN 1 AND 100 THEN
            PERFORM tock.raise_invalid('max_attempts', format('%s is out of range 1-100', v_number));
        END IF;
        UPDATE tock.config SET default_max_attempts = v_number::int, updated_at = now();
        UPDATE tock.jobs SET max_attempts = v_number::int
        WHERE 'max_attempts' = ANY (inherits) AND max_attempts <> v_number::int;
    WHEN 'timeout' THEN
        v_interval := tock.bounded_seconds('timeout', tock.parse_duration(p_value, 'timeout'), 2592000);
        UPDATE tock.config SET default_timeout = v_interval, updated_at = now();
        UPDATE tock.jobs SET timeout = v_interval WHERE 'timeout' = ANY (inherits) AND timeout <> v_interval;
    WHEN 'retry_base' THEN
        v_interval := tock.bounded_seconds('retry_base', tock.parse_duration(p_value, 'retry_base'), 86400);
        UPDATE tock.config SET default_retry_base = v_interval,
                               default_retry_cap = greatest(default_retry_cap, v_interval), updated_at = now();
        UPDATE tock.jobs SET retry_base = v_interval, retry_cap = greatest(retry_cap, v_interval)
        WHERE 'retry_base' = ANY (inherits) AND retry_base <> v_interval;
        -- A job that inherits the cap follows it, raised with the base, whoever's its own base is.
        UPDATE tock.jobs j SET retry_cap = greatest(c.default_retry_cap, j.retry_base)
        FROM tock.config c
        WHERE 'retry_cap' = ANY (j.inherits) AND j.retry_cap <> greatest(c.default_retry_cap, j.retry_base);
    WHEN 'retry_cap' THEN
        v_interval := tock.bounded_seconds('retry_cap', tock.parse_duration(p_value, 'retry_cap'), 2592000);
        IF v_interval < (SELECT c.default_retry_base FROM tock.config c) THEN
            PERFORM tock.raise_invalid('retry_cap', format('%s is shorter than retry_base (%s)', tock.duration_text(v_interval),
                                                           (SELECT tock.duration_text(c.default_retry_base) FROM tock.config c)));
        END IF;
        UPDATE tock.config SET default_retry_cap = v_interval, updated_at = now();
        UPDATE tock.jobs SET retry_cap = greatest(v_interval, retry_base)
        WHERE 'retry_cap' = ANY (inherits) AND retry_cap <> greatest(v_interval, retry_base);
    WHEN 'overlap' THEN
        PERFORM tock.check_job_settings(NULL, NULL, NULL, p_value);
        UPDATE tock.config SET default_overlap = p_value, updated_at = now();
        UPDATE tock.jobs SET overlap = p_value WHERE 'overlap' = ANY (inherits) AND overlap <> p_value;
    WHEN 'pool' THEN
        PERFORM tock.check_job_settings(NULL, NULL, NULL, NULL, NULL, p_value);
        UPDATE tock.config SET default_pool = p_value, updated_at = now();
        -- Their pending runs move with them (tock.tg_jobs__pool_moved).
        UPDATE tock.jobs SET pool = p_value WHERE 'pool' = ANY (inherits) AND pool <> p_value;
    WHEN 'portal_url' THEN
        IF btrim(p_value) IN ('', 'none') THEN
            UPDATE tock.config SET portal_url = '', updated_at = now();
        ELSIF btrim(p_value) !~ '^https?://[^[:space:]/?#@]+(/[^[:space:]?#]*)?$' OR length(p_value) > 500 THEN
            PERFORM tock.raise_invalid('portal_url', format('%L is not an http:// or https:// address (none clears it)',
                                                            left(p_value, 80)));
        ELSE
            UPDATE tock.config SET portal_url = rtrim(btrim(p_value), '/'), updated_at = now();
        END IF;
    WHEN 'history_retention' THEN
        PERFORM tock.set_history_retention(tock.parse_duration(p_value, 'history_retention'));
    WHEN 'audit_retention' THEN
        -- The log's retention is the owner's: an admin who could shorten it could erase the record of what they did.
        IF NOT tock.caller_owns_schema() THEN
            RAISE EXCEPTION 'audit_retention: only the schema''s owner may change how long the audit log is kept'
                USING ERRCODE = 'insufficient_privilege', COLUMN = 'audit_retention',
                      HINT = 'connect as the owner of schema tock (the role that ran tock migrate)';
        END IF;
        v_interval := tock.parse_duration(p_value, 'audit_retention');
        IF v_interval < interval '1 day' OR v_interval > interval '100 years' THEN
            PERFORM tock.raise_invalid('audit_retention', format('%s is not from 1d to 100 years', tock.duration_text(v_interval)));
        END IF;
        UPDATE tock.config SET audit_retention = v_interval, updated_at = now();
    ELSE
        PERFORM tock.raise_invalid('key', format('unknown setting %L; the settings: %s', left(coalesce(p_key, ''), 60),
                                                 (SELECT string_agg(s.key, ', ') FROM tock.config_settings s)));
    END CASE;
    RETURN (SELECT s.value FROM tock.config_settings s WHERE s.key = p_key);
END $$;
COMMENT ON FUNCTION tock.set_config(text, text) IS
    'Sets a fleet-wide setting (max_attempts, retry_base, retry_cap, timeout, overlap, pool, history_retention, audit_retention, portal_url); jobs that inherit it follow.';

-- Several settings from a JSON object ({"max_attempts": 3, "timeout": "2h"}: the API's PUT /config), in one
-- transaction: all or none.
CREATE OR REPLACE FUNCTION tock.set_config_json(p_settings jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_key text;
    v_value jsonb;
BEGIN
    IF jsonb_typeof(p_settings) IS DISTINCT FROM 'object' OR p_settings = '{}' THEN
        PERFORM tock.raise_invalid('body', 'expected a JSON object of settings, e.g. {"max_attempts": 3}');
    END IF;
    -- retry_base before retry_cap, whatever order jsonb keeps them in: a new base may raise the cap, and the cap is
    -- then checked against the new base.
    FOR v_key, v_value IN SELECT * FROM jsonb_each(p_settings) e ORDER BY e.key = 'retry_cap', e.key LOOP
        IF jsonb_typeof(v_value) NOT IN ('string', 'number') THEN
            PERFORM tock.raise_invalid(v_key, format('expected a string or a number, got %s', left(v_value::text, 60)));
        END IF;
        PERFORM tock.set_config(v_key, v_value #>> '{}');
    END LOOP;
END $$;
COMMENT ON FUNCTION tock.set_config_json(jsonb) IS
    'Sets fleet-wide settings from a JSON object ({"max_attempts": 3, "timeout": "2h"}), all or none.';
