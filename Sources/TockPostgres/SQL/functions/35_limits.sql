-- Concurrency and rate limits of pools and jobs (migration 0018). The claim enforces them: a pool that has a limit,
-- or holds a job that has one, is claimed one run at a time under that pool's lock (tock.claim_limited), so racing
-- workers on any number of hosts count the same running runs and starts.

-- A rate as people write it: '10/1m' (10 starts per minute), '100/1h', '5/30s', '1000/1d', '3/2 minutes'. Returns
-- the count and the period; raises naming p_field for anything else. NULL: no rate.
CREATE OR REPLACE FUNCTION tock.parse_rate(p_text text, p_field text DEFAULT 'rate',
                                           OUT rate_limit int, OUT rate_period interval)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_parts text[];
    v_count numeric;
    v_amount numeric;
    v_seconds numeric;
BEGIN
    IF p_text IS NULL THEN
        RETURN;
    END IF;
    v_parts := regexp_match(lower(p_text),
        '^\s*([0-9]{1,9})\s*/\s*([0-9]{0,9})\s*(s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hour|hours|d|day|days)\s*$');
    IF v_parts IS NULL THEN
        PERFORM tock.raise_invalid(p_field, format(
            '%L is not a rate: write starts per period, such as 10/1m, 100/1h, 5/30s or 1000/1d', left(p_text, 60)));
    END IF;
    v_count := v_parts[1]::numeric;
    v_amount := coalesce(nullif(v_parts[2], '')::numeric, 1);
    IF v_count NOT BETWEEN 1 AND 100000 THEN
        PERFORM tock.raise_invalid(p_field, format('%s starts is out of range 1-100,000', v_count));
    END IF;
    v_seconds := v_amount * (CASE left(v_parts[3], 1) WHEN 's' THEN 1 WHEN 'm' THEN 60 WHEN 'h' THEN 3600 ELSE 86400 END);
    IF v_seconds NOT BETWEEN 1 AND 86400 THEN
        PERFORM tock.raise_invalid(p_field, format('the period of %L is not between 1 second and 1 day', left(p_text, 60)));
    END IF;
    rate_limit := v_count::int;
    rate_period := make_interval(secs => v_seconds::float8);
END $$;

-- A rate for people: '10/1m', '100/1h', '5/30s'; NULL without one.
CREATE OR REPLACE FUNCTION tock.rate_text(p_limit int, p_period interval)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT p_limit || '/' || CASE
        WHEN extract(epoch FROM p_period) % 86400 = 0 THEN (extract(epoch FROM p_period) / 86400)::bigint || 'd'
        WHEN extract(epoch FROM p_period) % 3600 = 0 THEN (extract(epoch FROM p_period) / 3600)::bigint || 'h'
        WHEN extract(epoch FROM p_period) % 60 = 0 THEN (extract(epoch FROM p_period) / 60)::bigint || 'm'
        ELSE extract(epoch FROM p_period)::bigint || 's' END
    WHERE p_limit IS NOT NULL
$$;
COMMENT ON FUNCTION tock.rate_text(int, interval) IS
    'A rate for people: 10/1m, 100/1h, 5/30s; NULL without one.';

-- A limit's max_running from JSON: a whole number 1-100,000, or null for none.
CREATE OR REPLACE FUNCTION tock.json_max_running(p_changes jsonb)
RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_value jsonb := p_changes -> 'max_running';
BEGIN
    IF v_value IS NULL OR jsonb_typeof(v_value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v_value) <> 'number' OR v_value::text::numeric <> trunc(v_value::text::numeric) THEN
        PERFORM tock.raise_invalid('max_running', format('expected a whole number or null, got %s', left(v_value::text, 60)));
    END IF;
    IF v_value::text::numeric NOT BETWEEN 1 AND 100000 THEN
        PERFORM tock.raise_invalid('max_running', format('%s is out of range 1-100,000', v_value::text));
    END IF;
    RETURN v_value::text::int;
END $$;

-- Sets a pool's limits from a JSON object: "max_running" (a whole number, or null for none) and "rate" ('10/1m', or
-- null for none); a field left out keeps its value. Returns the pool's name. Takes the pool's claim lock, so a claim
-- of the pool as limited finishes under the old limits; one that began while the pool was unlimited (and so took no
-- lock) may start its runs past a new limit, once. The workers are woken: a raised limit may let runs start.
CREATE OR REPLACE FUNCTION tock.set_pool(p_pool text, p_changes jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_unknown text;
    v_rate record;
BEGIN
    IF p_pool IS NULL OR NOT tock.is_pool_name(p_pool) THEN
        PERFORM tock.raise_invalid('pool', format(
            '%L: a pool''s name starts with a letter and has up to 64 letters, digits, ''.'', ''_'' or ''-''', left(p_pool, 100)));
    END IF;
    IF jsonb_typeof(p_changes) IS DISTINCT FROM 'object' THEN
        PERFORM tock.raise_invalid('body', 'expected a JSON object with max_running and/or rate');
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown FROM jsonb_object_keys(p_changes) k WHERE k NOT IN ('max_running', 'rate');
    IF v_unknown IS NOT NULL THEN
        PERFORM tock.raise_invalid(split_part(v_unknown, ', ', 1), format('unknown field(s) %s; known fields: max_running, rate', v_unknown));
    END IF;
    IF p_changes ? 'rate' AND jsonb_typeof(p_changes -> 'rate') NOT IN ('string', 'null') THEN
        PERFORM tock.raise_invalid('rate', format('expected a rate such as "10/1m" or null, got %s', left((p_changes -> 'rate')::text, 60)));
    END IF;
    v_rate := tock.parse_rate(p_changes ->> 'rate');
    PERFORM pg_advisory_xact_lock(tock.worker_lock_key() + 4, hashtext(p_pool));
    INSERT INTO tock.pools AS p (name, max_running, rate_limit, rate_period)
    VALUES (p_pool, tock.json_max_running(p_changes), v_rate.rate_limit, v_rate.rate_period)
    ON CONFLICT (name) DO UPDATE SET
        max_running = CASE WHEN p_changes ? 'max_running' THEN EXCLUDED.max_running ELSE p.max_running END,
        rate_limit = CASE WHEN p_changes ? 'rate' THEN EXCLUDED.rate_limit ELSE p.rate_limit END,
        rate_period = CASE WHEN p_changes ? 'rate' THEN EXCLUDED.rate_period ELSE p.rate_period END,
        updated_at = now();
    -- A pool without limits keeps no row, and its starts no log.
    DELETE FROM tock.pools WHERE name = p_pool AND max_running IS NULL AND rate_limit IS NULL;
    IF NOT EXISTS (SELECT 1 FROM tock.pools WHERE name = p_pool AND rate_limit IS NOT NULL) THEN
        DELETE FROM tock.limit_starts WHERE scope = 'pool:' || p_pool;
    END IF;
    PERFORM pg_notify('tock_runs', '');
    RETURN p_pool;
END $$;
COMMENT ON FUNCTION tock.set_pool(text, jsonb) IS
    'Sets a pool''s limits: {"max_running": 4, "rate": "10/1m"} (null clears one); enforced by every claim.';

-- How many more runs a limited pool or job may start now: the room under max_running (p_running of them running)
-- and under the rate (starts logged for p_scope within the period, which this prunes). NULL: no limit at all.
CREATE OR REPLACE FUNCTION tock.limit_room(p_scope text, p_running bigint, p_max_running int, p_rate_limit int,
                                           p_rate_period interval, p_now timestamptz)
RETURNS int LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_room int;
BEGIN
    IF p_max_running IS NOT NULL THEN
        v_room := greatest(p_max_running - p_running, 0);
    END IF;
    IF p_rate_limit IS NOT NULL THEN
        DELETE FROM tock.limit_starts WHERE scope = p_scope AND started_at <= p_now - p_rate_period;
        v_room := least(coalesce(v_room, p_rate_limit),
                        greatest(p_rate_limit - (SELECT count(*) FROM tock.limit_starts WHERE scope = p_scope), 0));
    END IF;
    RETURN v_room;
END $$;

-- Claims up to p_take runs of pool p_pool, one at a time, within the pool's limits and its jobs': the part of
-- tock.claim_runs for a pool that has a limit or holds a job that has one. The caller holds the pool's claim lock
-- (every claim of the pool takes it), so the running runs and starts counted here are every worker's, and no other
-- claim of the pool starts any until this transaction ends. Walks the pool's ready runs in claim order; a run of a
-- job at its limit is passed over for the next. Not SKIP LOCKED on the walk, but on each run it takes: a cancel may
-- hold one.
CREATE OR REPLACE FUNCTION tock.claim_limited(p_worker bigint, p_pool text, p_take int, p_now timestamptz)
RETURNS TABLE (
    run_id bigint, job_id bigint, job_name text, script text, args text[], timeout_seconds float8,
    attempt int, trigger text, scheduled_for timestamptz, extras jsonb)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_pool tock.pools%ROWTYPE;
    v_room int;
    v_candidate record;
    v_job record;
    v_jobs bigint[] := '{}';
    v_job_rooms int[] := '{}';
    v_job_rated boolean[] := '{}';
    v_i int;
    v_claimed record;
    v_got int := 0;
    -- Starts count from when they happen, not from when the claim's transaction began: it may have waited for the
    -- pool's claim lock. The runs say the same time (started_at, and the timeout from it): dated from the
    -- transaction's start, runs claimed after such a wait showed more starts in a period than the rate allows.
    v_at constant timestamptz := greatest(p_now, clock_timestamp());
BEGIN
    SELECT * INTO v_pool FROM tock.pools p WHERE p.name = p_pool;
    v_room := tock.limit_room('pool:' || p_pool,
        CASE WHEN v_pool.max_running IS NOT NULL THEN (SELECT count(*) FROM tock.run_leases l WHERE l.pool = p_pool) END,
        v_pool.max_running, v_pool.rate_limit, v_pool.rate_period, v_at);
    IF v_room <= 0 THEN
        RETURN;
    END IF;
    FOR v_candidate IN
        SELECT r.id, r.job_id FROM tock.runs r
        WHERE r.pool = p_pool AND r.status = 'pending' AND r.run_after <= p_now
          AND ((SELECT j.overlap FROM tock.jobs j WHERE j.id = r.job_id) <> 'queue'
               OR (NOT EXISTS (SELECT 1 FROM tock.runs x WHERE x.job_id = r.job_id AND x.status = 'running')
                   AND r.id = (SELECT min(p.id) FROM tock.runs p WHERE p.job_id = r.job_id AND p.status = 'pending')))
        ORDER BY r.priority DESC, r.run_after, r.id
    LOOP
        EXIT WHEN v_got >= p_take OR v_room <= 0;
        v_i := array_position(v_jobs, v_candidate.job_id);
        IF v_i IS NULL THEN
            SELECT j.max_running, j.rate_limit, j.rate_period INTO v_job FROM tock.jobs j WHERE j.id = v_candidate.job_id;
            v_jobs := v_jobs || v_candidate.job_id;
            v_job_rooms := v_job_rooms || tock.limit_room('job:' || v_candidate.job_id,
                CASE WHEN v_job.max_running IS NOT NULL
                     THEN (SELECT count(*) FROM tock.run_leases l WHERE l.job_id = v_candidate.job_id) END,
                v_job.max_running, v_job.rate_limit, v_job.rate_period, v_at);
            v_job_rated := v_job_rated || (v_job.rate_limit IS NOT NULL);
            v_i := cardinality(v_jobs);
        END IF;
        CONTINUE WHEN v_job_rooms[v_i] <= 0;
        UPDATE tock.runs r
        SET status = 'running', started_at = v_at, worker_id = p_worker,
            timeout_at = v_at + (SELECT j.timeout FROM tock.jobs j WHERE j.id = r.job_id)
        WHERE r.id = (SELECT x.id FROM tock.runs x WHERE x.id = v_candidate.id AND x.status = 'pending'
                      FOR UPDATE SKIP LOCKED)
        RETURNING r.id, r.job_id, r.attempt, r.trigger, r.scheduled_for, r.timeout_at, r.params, r.upstream INTO v_claimed;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO tock.run_leases (worker_id, run_id, pool, job_id) VALUES (p_worker, v_claimed.id, p_pool, v_claimed.job_id);
        IF v_pool.rate_limit IS NOT NULL THEN
            INSERT INTO tock.limit_starts (scope, started_at) VALUES ('pool:' || p_pool, v_at);
        END IF;
        IF v_job_rated[v_i] THEN
            INSERT INTO tock.limit_starts (scope, started_at) VALUES ('job:' || v_claimed.job_id, v_at);
        END IF;
        v_room := v_room - 1;
        v_job_rooms[v_i] := v_job_rooms[v_i] - 1;
        v_got := v_got + 1;
        RETURN QUERY
        SELECT v_claimed.id, j.id, j.name, coalesce(j.script, ''),
               CASE WHEN v_claimed.params IS NULL THEN j.args ELSE tock.run_args(j.args, v_claimed.params) END,
               extract(epoch FROM v_claimed.timeout_at - v_at)::float8, v_claimed.attempt, v_claimed.trigger,
               v_claimed.scheduled_for, tock.run_extras(v_claimed.params, v_claimed.upstream, j.env, j.secrets, j.http)
        FROM tock.jobs j WHERE j.id = v_claimed.job_id;
    END LOOP;
END $$;

-- The pools among p_pools whose claims go through tock.claim_limited, in name order (the order their locks are
-- taken in, so two claims never wait on each other in a circle).
CREATE OR REPLACE FUNCTION tock.limited_pools(p_pools text[])
RETURNS text[] LANGUAGE sql STABLE
SET enable_seqscan = off
AS $$
    SELECT coalesce(array_agg(p ORDER BY p), '{}') FROM unnest(p_pools) p
    WHERE EXISTS (SELECT 1 FROM tock.pools l WHERE l.name = p)
       OR EXISTS (SELECT 1 FROM tock.jobs j WHERE j.pool = p AND (j.max_running IS NOT NULL OR j.rate_limit IS NOT NULL))
$$;

-- When a rate-limited pool or job among p_pools' whose period is full next has room again; NULL: none is full. An
-- idle worker sleeps until then (tock.next_delayed_run), since nothing else would wake it.
CREATE OR REPLACE FUNCTION tock.next_rate_room(p_pools text[], p_now timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE
SET enable_seqscan = off
AS $$
    WITH limited AS (
        SELECT 'pool:' || p.name AS scope, p.rate_limit, p.rate_period FROM tock.pools p
        WHERE p.name = ANY (p_pools) AND p.rate_limit IS NOT NULL
        UNION ALL
        SELECT 'job:' || j.id, j.rate_limit, j.rate_period FROM tock.jobs j
        WHERE j.pool = ANY (p_pools) AND (j.max_running IS NOT NULL OR j.rate_limit IS NOT NULL) AND j.rate_limit IS NOT NULL
    )
    SELECT min(s.first + l.rate_period)
    FROM limited l
    CROSS JOIN LATERAL (SELECT min(x.started_at) AS first, count(*) AS n FROM tock.limit_starts x
                        WHERE x.scope = l.scope AND x.started_at > p_now - l.rate_period) s
    WHERE s.n >= l.rate_limit
$$;
