-- Schedules: one string per job, parsed and computed here, in the job's time zone.
-- Re-applied by every `tock migrate` whose functions changed; every statement is idempotent.

-- Raise a bad-input error naming the field ('schedule.cron', 'timezone', …); SQLSTATE 22023.
CREATE OR REPLACE FUNCTION tock.raise_invalid(p_field text, p_message text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: %', p_field, p_message
        USING ERRCODE = 'invalid_parameter_value', COLUMN = p_field;
END $$;

-- The canonical IANA name of a time zone, matched case-insensitively; raises for an unknown zone.
CREATE OR REPLACE FUNCTION tock.canonical_timezone(p_timezone text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_name text;
BEGIN
    SELECT name INTO v_name FROM tock.timezones WHERE name = p_timezone;
    IF v_name IS NULL THEN
        SELECT min(name) INTO v_name FROM tock.timezones WHERE lower(name) = lower(btrim(p_timezone));
    END IF;
    IF v_name IS NULL THEN
        PERFORM tock.raise_invalid('timezone', format(
            'unknown time zone %L (use an IANA name such as Asia/Hong_Kong, Europe/London or UTC; '
            'SELECT name FROM tock.timezones lists them)', p_timezone));
    END IF;
    RETURN v_name;
END $$;
COMMENT ON FUNCTION tock.canonical_timezone(text) IS 'The IANA name of a time zone, or an error naming the bad zone.';

-- One cron field ('*/15', '1-5', 'MON,THU', '0 and 7 are Sunday') as the sorted set of values it matches.
CREATE OR REPLACE FUNCTION tock.parse_cron_field(
    p_text text, p_position int, p_label text, p_min int, p_max int, p_names text[] DEFAULT NULL)
RETURNS int[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_field constant text := format('schedule.cron: field %s (%s)', p_position, p_label);
    v_part text;
    v_m text[];
    v_lo int;
    v_hi int;
    v_step int;
    v_values int[] := '{}';
    v_effective_max int := p_max;
BEGIN
    IF p_label = 'day of week' THEN
        v_effective_max := 7;  -- 7 is accepted as Sunday
    END IF;
    FOREACH v_part IN ARRAY string_to_array(lower(p_text), ',') LOOP
        v_m := regexp_match(v_part, '^(\*|([a-z0-9]+)(-([a-z0-9]+))?)(/([0-9]{1,4}))?$');
        IF v_m IS NULL THEN
            PERFORM tock.raise_invalid('schedule.cron',
                format('field %s (%s) %L is not a value, range, list or step', p_position, p_label, v_part));
        END IF;
        IF v_m[1] = '*' THEN
            v_lo := p_min;
            v_hi := p_max;
        ELSE
            v_lo := tock.cron_value(v_m[2], p_position, p_label, p_min, v_effective_max, p_names);
            IF v_m[4] IS NOT NULL THEN
                v_hi := tock.cron_value(v_m[4], p_position, p_label, p_min, v_effective_max, p_names);
            ELSIF v_m[6] IS NOT NULL THEN
                v_hi := v_effective_max;  -- 'a/n' means a, a+n, … up to the maximum
            ELSE
                v_hi := v_lo;
            END IF;
            IF v_hi < v_lo THEN
                PERFORM tock.raise_invalid('schedule.cron',
                    format('field %s (%s) range %L runs backwards', p_position, p_label, v_part));
            END IF;
        END IF;
        v_step := coalesce(v_m[6]::int, 1);
        IF v_step < 1 OR v_step > v_effective_max - p_min + 1 THEN
            PERFORM tock.raise_invalid('schedule.cron',
                format('field %s (%s) step %L must be between 1 and %s', p_position, p_label, v_m[6],
                       v_effective_max - p_min + 1));
        END IF;
        v_values := v_values || ARRAY(SELECT generate_series(v_lo, v_hi, v_step));
    END LOOP;
    IF p_label = 'day of week' THEN
        v_values := array_replace(v_values, 7, 0);
    END IF;
    RETURN ARRAY(SELECT DISTINCT v FROM unnest(v_values) v ORDER BY v);
END $$;

-- One value of a cron field: a number in range or a name (JAN, MON).
CREATE OR REPLACE FUNCTION tock.cron_value(
    p_text text, p_position int, p_label text, p_min int, p_max int, p_names text[])
RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_index int;
    v_value bigint;
BEGIN
    IF p_text ~ '^[0-9]{1,9}$' THEN
        v_value := p_text::bigint;
        IF v_value < p_min OR v_value > p_max THEN
            PERFORM tock.raise_invalid('schedule.cron',
                format('field %s (%s) %L is out of range %s-%s', p_position, p_label, p_text, p_min, p_max));
        END IF;
        RETURN v_value;
    END IF;
    v_index := array_position(p_names, left(p_text, 3));
    IF v_index IS NULL OR length(p_text) <> 3 THEN
        PERFORM tock.raise_invalid('schedule.cron', format('field %s (%s) %L is not a number%s',
            p_position, p_label, p_text,
            CASE WHEN p_names IS NULL THEN format(' in range %s-%s', p_min, p_max)
                 ELSE ' or a name such as ' || upper(p_names[1]) || ' or ' || upper(p_names[2]) END));
    END IF;
    RETURN p_min + v_index - 1;
END $$;

-- 'HH:MM' as {hour, minute}; p_field names the part of the schedule for the error.
CREATE OR REPLACE FUNCTION tock.parse_clock_time(p_text text)
RETURNS int[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_m text[] := regexp_match(p_text, '^([0-9]{1,2}):([0-9]{2})$');
BEGIN
    IF v_m IS NULL OR v_m[1]::int > 23 OR v_m[2]::int > 59 THEN
        PERFORM tock.raise_invalid('schedule.time',
            format('%L is not a time of day (use HH:MM from 00:00 to 23:59)', p_text));
    END IF;
    RETURN ARRAY[v_m[1]::int, v_m[2]::int];
END $$;

-- Every schedule string Tock accepts, as a tock.schedule_spec. Raises an error naming the bad part.
CREATE OR REPLACE FUNCTION tock.parse_schedule(p_schedule text)
RETURNS tock.schedule_spec LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    c_weekday_names constant text[] := ARRAY['sun','mon','tue','wed','thu','fri','sat'];
    c_month_names constant text[] := ARRAY['jan','feb','mar','apr','may','jun','jul','aug','sep','oct','nov','dec'];
    v_text text;
    v_m text[];
    v_fields text[];
    v_time int[];
    v_amount bigint;
    v_spec tock.schedule_spec;
    v_day text;
    v_days int[] := '{}';
BEGIN
    -- Bounded before any parsing: a cron list tens of KB long costs seconds of database time per preview.
    IF length(p_schedule) > 500 THEN
        PERFORM tock.raise_invalid('schedule', format('%s characters; a schedule has at most 500', length(p_schedule)));
    END IF;
    v_text := lower(regexp_replace(btrim(coalesce(p_schedule, '')), '\s+', ' ', 'g'));
    v_spec.days_restricted := false;
    v_spec.weekdays_restricted := false;
    v_spec.clamp_to_month_end := false;
    v_spec.minutes := ARRAY[0];
    v_spec.hours := ARRAY(SELECT generate_series(0, 23));
    v_spec.days := ARRAY(SELECT generate_series(1, 31));
    v_spec.months := ARRAY(SELECT generate_series(1, 12));
    v_spec.weekdays := ARRAY(SELECT generate_series(0, 6));

    IF v_text = '' THEN
        PERFORM tock.raise_invalid('schedule', 'the schedule is empty (use ''manual'' for a job that only runs on demand)');
    END IF;

    IF v_text = 'manual' THEN
        v_spec.kind := 'manual';
        RETURN v_spec;
    END IF;

    -- every 30s / every 5m / every 2h / every 1d (and the words: seconds, minutes, hours, days)
    IF v_text LIKE 'every %' THEN
        v_m := regexp_match(v_text,
            '^every (-?[0-9]+) ?(s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)$');
        IF v_m IS NULL THEN
            PERFORM tock.raise_invalid('schedule.every', format(
                '%L is not an interval (use a whole number and a unit: every 30s, every 5m, every 2h, every 1d)', p_schedule));
        END IF;
        IF length(v_m[1]) > 9 THEN
            PERFORM tock.raise_invalid('schedule.every', format('%s is too large an interval', v_m[1]));
        END IF;
        v_amount := v_m[1]::bigint;
        IF v_amount <= 0 THEN
            PERFORM tock.raise_invalid('schedule.every', format('the interval must be greater than zero, not %s', v_m[1]));
        END IF;
        v_spec.kind := 'interval';
        -- Seconds only: an interval is elapsed time, so '1 day' must not follow DST as calendar days do.
        v_spec.every := make_interval(secs => v_amount * CASE left(v_m[2], 1)
            WHEN 's' THEN 1 WHEN 'm' THEN 60 WHEN 'h' THEN 3600 ELSE 86400 END);
        IF v_spec.every > interval '366 days' THEN
            PERFORM tock.raise_invalid('schedule.every', format('%L is longer than a year', p_schedule));
        END IF;
        RETURN v_spec;
    END IF;

    v_spec.kind := 'calendar';

    -- hourly at :15
    IF v_text LIKE 'hourly%' THEN
        v_m := regexp_match(v_text, '^hourly at :?([0-9]{1,2})$');
        IF v_m IS NULL OR v_m[1]::int > 59 THEN
            PERFORM tock.raise_invalid('schedule.time',
                format('%L needs a minute from :00 to :59, as in ''hourly at :15''', p_schedule));
        END IF;
        v_spec.minutes := ARRAY[v_m[1]::int];
        RETURN v_spec;
    END IF;

    -- daily at 06:00
    IF v_text LIKE 'daily%' THEN
        v_m := regexp_match(v_text, '^daily at (\S+)$');
        IF v_m IS NULL THEN
            PERFORM tock.raise_invalid('schedule.time', format('%L needs a time, as in ''daily at 06:00''', p_schedule));
        END IF;
        v_time := tock.parse_clock_time(v_m[1]);
        v_spec.hours := ARRAY[v_time[1]];
        v_spec.minutes := ARRAY[v_time[2]];
        RETURN v_spec;
    END IF;

    -- weekly on mon,thu at 09:30 (names, or ranges such as mon-fri)
    IF v_text LIKE 'weekly%' THEN
        v_m := regexp_match(v_text, '^weekly on (\S+) at (\S+)$');
        IF v_m IS NULL THEN
            PERFORM tock.raise_invalid('schedule.weekday',
                format('%L needs days and a time, as in ''weekly on mon,thu at 09:30''', p_schedule));
        END IF;
        IF v_m[1] !~ '^[a-z]{3}(-[a-z]{3})?(,[a-z]{3}(-[a-z]{3})?)*$' THEN
            PERFORM tock.raise_invalid('schedule.weekday',
                format('%L is not a list of weekdays (use mon, tue, wed, thu, fri, sat, sun, or a range such as mon-fri)', v_m[1]));
        END IF;
        BEGIN
            v_spec.weekdays := tock.parse_cron_field(v_m[1], 5, 'day of week', 0, 6, c_weekday_names);
        EXCEPTION WHEN invalid_parameter_value THEN
            PERFORM tock.raise_invalid('schedule.weekday',
                format('%L is not a list of weekdays (use mon, tue, wed, thu, fri, sat, sun, or a range such as mon-fri)', v_m[1]));
        END;
        v_spec.weekdays_restricted := true;
        v_time := tock.parse_clock_time(v_m[2]);
        v_spec.hours := ARRAY[v_time[1]];
        v_spec.minutes := ARRAY[v_time[2]];
        RETURN v_spec;
    END IF;

    -- monthly on 1 at 08:00; days 29-31 and 'last' fire on the last day of shorter months
    IF v_text LIKE 'monthly%' THEN
        v_m := regexp_match(v_text, '^monthly on (\S+) at (\S+)$');
        IF v_m IS NULL THEN
            PERFORM tock.raise_invalid('schedule.day',
                format('%L needs days and a time, as in ''monthly on 1 at 08:00''', p_schedule));
        END IF;
        FOREACH v_day IN ARRAY string_to_array(v_m[1], ',') LOOP
            IF v_day = 'last' THEN
                v_days := v_days || 31;
            ELSIF v_day ~ '^[0-9]{1,2}$' AND v_day::int BETWEEN 1 AND 31 THEN
                v_days := v_days || v_day::int;
            ELSE
                PERFORM tock.raise_invalid('schedule.day',
                    format('day %L is out of range 1-31 (or use ''last'')', v_day));
            END IF;
        END LOOP;
        v_spec.days := ARRAY(SELECT DISTINCT d FROM unnest(v_days) d ORDER BY d);
        v_spec.days_restricted := true;
        v_spec.clamp_to_month_end := true;
        v_time := tock.parse_clock_time(v_m[2]);
        v_spec.hours := ARRAY[v_time[1]];
        v_spec.minutes := ARRAY[v_time[2]];
        RETURN v_spec;
    END IF;

    -- cron macros
    v_text := CASE v_text
        WHEN '@hourly' THEN '0 * * * *'
        WHEN '@daily' THEN '0 0 * * *'
        WHEN '@midnight' THEN '0 0 * * *'
        WHEN '@weekly' THEN '0 0 * * 0'
        WHEN '@monthly' THEN '0 0 1 * *'
        WHEN '@yearly' THEN '0 0 1 1 *'
        WHEN '@annually' THEN '0 0 1 1 *'
        ELSE v_text END;

    -- a standard 5-field cron expression
    v_fields := string_to_array(v_text, ' ');
    IF array_length(v_fields, 1) <> 5 THEN
        PERFORM tock.raise_invalid('schedule', format(
            '%L is not a schedule; use ''every 5m'', ''hourly at :15'', ''daily at 06:00'', '
            '''weekly on mon,thu at 09:30'', ''monthly on 1 at 08:00'', a 5-field cron expression '
            'such as ''*/15 * * * *'', or ''manual''%s', p_schedule,
            CASE WHEN v_text ~ '^[0-9*]' THEN format(' (a cron expression has 5 fields, this has %s)',
                                                   array_length(v_fields, 1)) ELSE '' END));
    END IF;
    v_spec.minutes := tock.parse_cron_field(v_fields[1], 1, 'minute', 0, 59);
    v_spec.hours := tock.parse_cron_field(v_fields[2], 2, 'hour', 0, 23);
    v_spec.days := tock.parse_cron_field(v_fields[3], 3, 'day of month', 1, 31);
    v_spec.months := tock.parse_cron_field(v_fields[4], 4, 'month', 1, 12, c_month_names);
    v_spec.weekdays := tock.parse_cron_field(v_fields[5], 5, 'day of week', 0, 6, c_weekday_names);
    -- As in Vixie cron and pg_cron: a field starting with '*' (even '*/2') leaves the day unrestricted.
    v_spec.days_restricted := left(v_fields[3], 1) <> '*';
    v_spec.weekdays_restricted := left(v_fields[5], 1) <> '*';
    -- A cron day that no month has (30 2 *) never fires: say so rather than store a dead job.
    IF NOT v_spec.weekdays_restricted AND NOT EXISTS (
        SELECT 1 FROM unnest(v_spec.months) mo, unnest(v_spec.days) d
        WHERE d <= extract(day FROM make_date(2024, mo, 1) + interval '1 month - 1 day')) THEN
        PERFORM tock.raise_invalid('schedule.cron',
            format('%L never fires: no month it names has that day', p_schedule));
    END IF;
    RETURN v_spec;
END $$;
COMMENT ON FUNCTION tock.parse_schedule(text) IS
    'Parses every, hourly/daily/weekly/monthly, cron (5 fields, names, steps, @daily) and manual; raises SQLSTATE 22023 naming the bad field.';

-- The instant a local wall-clock time denotes in p_timezone. A time that occurs twice (fall back) is its first
-- occurrence; a time that does not exist (spring forward) is the first instant after the gap.
CREATE OR REPLACE FUNCTION tock.local_to_instant(p_local timestamp, p_timezone text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_as_utc constant timestamptz := p_local AT TIME ZONE 'UTC';
    v_offset_before interval;
    v_offset_after interval;
    v_a timestamptz;
    v_b timestamptz;
    v_a_ok boolean;
    v_b_ok boolean;
    v_lo timestamptz;
    v_hi timestamptz;
    v_mid timestamptz;
BEGIN
    -- The zone's UTC offsets a day either side: no zone changes its offset twice within two days.
    v_offset_before := ((v_as_utc - interval '24 hours') AT TIME ZONE p_timezone) - (p_local - interval '24 hours');
    v_offset_after := ((v_as_utc + interval '24 hours') AT TIME ZONE p_timezone) - (p_local + interval '24 hours');
    v_a := v_as_utc - v_offset_before;
    v_a_ok := (v_a AT TIME ZONE p_timezone) = p_local;
    IF v_offset_before = v_offset_after AND v_a_ok THEN
        RETURN v_a;  -- the common case: no transition near
    END IF;
    v_b := v_as_utc - v_offset_after;
    v_b_ok := (v_b AT TIME ZONE p_timezone) = p_local;
    IF v_a_ok AND v_b_ok THEN
        RETURN least(v_a, v_b);
    ELSIF v_a_ok THEN
        RETURN v_a;
    ELSIF v_b_ok THEN
        RETURN v_b;
    END IF;
    -- In a gap: find the transition, the first instant whose local time is past p_local, to the second.
    v_lo := least(v_a, v_b);
    v_hi := greatest(v_a, v_b);
    WHILE v_hi - v_lo > interval '1 second' LOOP
        v_mid := to_timestamp(floor((extract(epoch FROM v_lo) + extract(epoch FROM v_hi)) / 2));
        IF (v_mid AT TIME ZONE p_timezone) >= p_local THEN
            v_hi := v_mid;
        ELSE
            v_lo := v_mid;
        END IF;
    END LOOP;
    RETURN v_hi;
END $$;

-- The first fire time of a parsed schedule strictly after p_after. Interval schedules fire at
-- p_anchor + k * every (k >= 1); calendar schedules at matching local times in p_timezone. NULL: never.
CREATE OR REPLACE FUNCTION tock.next_fire_time(
    p_spec tock.schedule_spec, p_timezone text, p_after timestamptz, p_anchor timestamptz DEFAULT NULL)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_anchor timestamptz;
    v_period float8;
    v_k bigint;
    v_local timestamp;
    v_limit timestamp;
    v_day int;
    v_last_day int;
    v_day_ok boolean;
    v_weekday_ok boolean;
    v_hour int;
    v_next int;
    v_instant timestamptz;
BEGIN
    IF p_spec.kind = 'manual' THEN
        RETURN NULL;
    END IF;

    IF p_spec.kind = 'interval' THEN
        v_anchor := coalesce(p_anchor, p_after);
        v_period := extract(epoch FROM p_spec.every);
        v_k := greatest(floor(extract(epoch FROM p_after - v_anchor) / v_period)::bigint + 1, 1);
        RETURN v_anchor + (v_k * v_period) * interval '1 second';
    END IF;

    -- Calendar: walk local wall-clock minutes, jumping whole months, days and hours that cannot match.
    v_local := date_trunc('minute', p_after AT TIME ZONE p_timezone) + interval '1 minute';
    v_limit := v_local + interval '10 years';
    WHILE v_local < v_limit LOOP
        IF NOT (date_part('month', v_local)::int = ANY (p_spec.months)) THEN
            v_local := date_trunc('month', v_local) + interval '1 month';
            CONTINUE;
        END IF;
        v_day := date_part('day', v_local)::int;
        v_last_day := date_part('day', date_trunc('month', v_local) + interval '1 month - 1 day')::int;
        v_day_ok := v_day = ANY (p_spec.days)
            OR (p_spec.clamp_to_month_end AND v_day = v_last_day
                AND EXISTS (SELECT 1 FROM unnest(p_spec.days) d WHERE d > v_last_day));
        v_weekday_ok := date_part('dow', v_local)::int = ANY (p_spec.weekdays);
        -- Vixie cron: with both day fields restricted, either one matching is enough.
        v_day_ok := (p_spec.days_restricted AND p_spec.weekdays_restricted AND (v_day_ok OR v_weekday_ok))
            OR (v_day_ok AND v_weekday_ok);
        IF NOT v_day_ok THEN
            v_local := date_trunc('day', v_local) + interval '1 day';
            CONTINUE;
        END IF;
        v_hour := date_part('hour', v_local)::int;
        SELECT min(h) INTO v_next FROM unnest(p_spec.hours) h WHERE h >= v_hour;
        IF v_next IS NULL THEN
            v_local := date_trunc('day', v_local) + interval '1 day';
            CONTINUE;
        ELSIF v_next > v_hour THEN
            v_local := date_trunc('day', v_local) + make_interval(hours => v_next);
        END IF;
        SELECT min(m) INTO v_next FROM unnest(p_spec.minutes) m WHERE m >= date_part('minute', v_local)::int;
        IF v_next IS NULL THEN
            v_local := date_trunc('hour', v_local) + interval '1 hour';
            CONTINUE;
        END IF;
        v_local := date_trunc('hour', v_local) + make_interval(mins => v_next);
        v_instant := tock.local_to_instant(v_local, p_timezone);
        IF v_instant > p_after THEN
            RETURN v_instant;
        END IF;
        -- A gap time that maps to an instant already passed, or the second pass of a repeated hour.
        v_local := v_local + interval '1 minute';
    END LOOP;
    RETURN NULL;
END $$;

-- The next p_count fire times of any schedule string: the CLI, the API's preview and tock.schedule_preview use it
-- (the scheduler moves a job on with tock.next_fire_time).
CREATE OR REPLACE FUNCTION tock.next_fire_times(
    p_schedule text, p_timezone text DEFAULT 'UTC', p_after timestamptz DEFAULT now(), p_count int DEFAULT 5,
    p_anchor timestamptz DEFAULT NULL)
RETURNS SETOF timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_spec constant tock.schedule_spec := tock.parse_schedule(p_schedule);
    v_timezone constant text := tock.canonical_timezone(p_timezone);
    v_at timestamptz := p_after;
    v_anchor constant timestamptz := coalesce(p_anchor, p_after);
BEGIN
    IF p_count IS NULL OR p_count < 0 OR p_count > 1000 THEN
        PERFORM tock.raise_invalid('count', format('%s fire times: ask for 0 to 1000', p_count));
    END IF;
    FOR i IN 1 .. p_count LOOP
        v_at := tock.next_fire_time(v_spec, v_timezone, v_at, v_anchor);
        EXIT WHEN v_at IS NULL;
        RETURN NEXT v_at;
    END LOOP;
END $$;
COMMENT ON FUNCTION tock.next_fire_times(text, text, timestamptz, int, timestamptz) IS
    'The next p_count fire times of a schedule string in a time zone, after p_after (interval schedules anchored at p_anchor, default p_after).';

-- A list of ints as compact text: {1,2,3,5} -> '1-3,5'; p_names[1] names the value p_first.
CREATE OR REPLACE FUNCTION tock.describe_values(p_values int[], p_names text[] DEFAULT NULL, p_first int DEFAULT 0)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    WITH v AS (SELECT x, x - row_number() OVER (ORDER BY x) AS grp FROM unnest(p_values) x),
         r AS (SELECT min(x) AS lo, max(x) AS hi FROM v GROUP BY grp)
    SELECT string_agg(
        CASE WHEN lo = hi THEN coalesce(p_names[lo - p_first + 1], lo::text)
             WHEN hi = lo + 1 THEN coalesce(p_names[lo - p_first + 1], lo::text) || ',' || coalesce(p_names[hi - p_first + 1], hi::text)
             ELSE coalesce(p_names[lo - p_first + 1], lo::text) || '-' || coalesce(p_names[hi - p_first + 1], hi::text) END,
        ',' ORDER BY lo)
    FROM r
$$;

-- A parsed schedule in words, for tock.job_overview and the portal. The jobs trigger passes the spec it has just
-- parsed: parsing is most of the cost of a job's insert, so it is done once.
CREATE OR REPLACE FUNCTION tock.describe_spec(p_spec tock.schedule_spec)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    c_weekdays constant text[] := ARRAY['Sun','Mon','Tue','Wed','Thu','Fri','Sat'];
    c_months constant text[] := ARRAY['Jan','Feb','Mar','Apr','May','Jun','Jul','Aug','Sep','Oct','Nov','Dec'];
    v_seconds bigint;
    v_text text;
    v_unit text;
    v_amount bigint;
BEGIN
    IF p_spec.kind = 'manual' THEN
        RETURN 'manual (run on demand only)';
    ELSIF p_spec.kind = 'interval' THEN
        v_seconds := extract(epoch FROM p_spec.every)::bigint;
        SELECT u, v_seconds / s INTO v_unit, v_amount
        FROM (VALUES ('day', 86400), ('hour', 3600), ('minute', 60), ('second', 1)) AS units(u, s)
        WHERE v_seconds % s = 0 ORDER BY s DESC LIMIT 1;
        RETURN 'every ' || CASE WHEN v_amount = 1 THEN v_unit ELSE v_amount || ' ' || v_unit || 's' END;
    END IF;

    -- The time of day.
    IF cardinality(p_spec.minutes) = 1 AND cardinality(p_spec.hours) = 1 THEN
        v_text := format('at %s:%s', lpad(p_spec.hours[1]::text, 2, '0'), lpad(p_spec.minutes[1]::text, 2, '0'));
    ELSIF cardinality(p_spec.hours) = 24 AND cardinality(p_spec.minutes) = 60 THEN
        v_text := 'every minute';
    ELSIF cardinality(p_spec.hours) = 24 AND cardinality(p_spec.minutes) = 1 THEN
        v_text := format('hourly at :%s', lpad(p_spec.minutes[1]::text, 2, '0'));
    ELSIF cardinality(p_spec.hours) = 24 THEN
        v_text := format('at minutes %s of every hour', tock.describe_values(p_spec.minutes));
    ELSE
        v_text := format('at minute%s %s past hour%s %s',
            CASE WHEN cardinality(p_spec.minutes) > 1 THEN 's' ELSE '' END, tock.describe_values(p_spec.minutes),
            CASE WHEN cardinality(p_spec.hours) > 1 THEN 's' ELSE '' END, tock.describe_values(p_spec.hours));
    END IF;

    -- The days.
    IF p_spec.clamp_to_month_end AND p_spec.days = ARRAY[31] THEN
        v_text := format('monthly on the last day %s', v_text);
    ELSIF p_spec.clamp_to_month_end THEN
        v_text := format('monthly on day %s %s', tock.describe_values(p_spec.days), v_text)
            || CASE WHEN p_spec.days[cardinality(p_spec.days)] >= 29 THEN ' (or the month''s last day)' ELSE '' END;
    ELSIF p_spec.days_restricted AND p_spec.weekdays_restricted THEN
        v_text := format('%s on day %s of the month or on %s', v_text,
            tock.describe_values(p_spec.days), tock.describe_values(p_spec.weekdays, c_weekdays));
    ELSIF p_spec.days_restricted THEN
        v_text := format('%s on day %s of the month', v_text, tock.describe_values(p_spec.days));
    ELSIF p_spec.weekdays_restricted THEN
        v_text := format('%s on %s', v_text, tock.describe_values(p_spec.weekdays, c_weekdays));
    ELSIF cardinality(p_spec.hours) = 1 THEN
        v_text := 'daily ' || v_text;
    END IF;
    IF cardinality(p_spec.months) < 12 THEN
        v_text := format('%s in %s', v_text, tock.describe_values(p_spec.months, c_months, 1));
    END IF;
    RETURN v_text;
END $$;

-- A schedule string in words.
CREATE OR REPLACE FUNCTION tock.describe_schedule(p_schedule text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT tock.describe_spec(tock.parse_schedule(p_schedule))
$$;
COMMENT ON FUNCTION tock.describe_schedule(text) IS 'A schedule string in words, e.g. ''daily at 06:00'', ''at 09:30 on Mon-Fri''.';
