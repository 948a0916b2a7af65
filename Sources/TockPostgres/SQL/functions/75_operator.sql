-- What an operator on call asks: every run by status, job, trigger, worker, pool and time; the failures of the last
-- hours by job; runs and failures over time; and bulk retry, cancel and delete of what a filter or a selection
-- names, in one transaction, recorded in the audit log.

-- A time a filter is given: '1h', '30m', '7d' (that long before now) or a timestamp ('2026-12-05T14:00:00Z').
CREATE OR REPLACE FUNCTION tock.filter_time(p_field text, p_text text, p_now timestamptz DEFAULT now())
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_match text[] := regexp_match(btrim(p_text), '^([0-9]{1,6})([mhd])$');
BEGIN
    IF v_match IS NOT NULL THEN
        RETURN p_now - v_match[1]::int * CASE v_match[2] WHEN 'm' THEN interval '1 minute'
                                                         WHEN 'h' THEN interval '1 hour' ELSE interval '1 day' END;
    END IF;
    RETURN btrim(p_text)::timestamptz;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_parameter_value OR syntax_error THEN
    PERFORM tock.raise_invalid(p_field, format('%L is not a time: give 30m, 1h, 7d (that long ago) or a timestamp like 2026-12-05T14:00:00Z',
                                               left(p_text, 60)));
END $$;

-- A filter time no further back than p_most: the pages that group or count over a span read all of it.
CREATE OR REPLACE FUNCTION tock.recent_time(p_field text, p_text text, p_most interval)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_at constant timestamptz := tock.filter_time(p_field, p_text);
BEGIN
    IF v_at < now() - p_most THEN
        PERFORM tock.raise_invalid(p_field, format('%L is more than %s back; give a shorter span', left(p_text, 60),
                                                   tock.duration_text(p_most)));
    END IF;
    RETURN v_at;
END $$;

-- A run filter, checked: a JSON object of status (one or a list, comma-separated), job, trigger, worker, pool, since
-- and until (when the run ended, or was enqueued while in flight). Any other key, a value that is not text, an
-- unknown status or trigger, an unknown job: refused, naming it. Returns the filter as tock.find_runs reads it:
-- statuses text[], job_id, trigger, worker, pool, since, until.
CREATE OR REPLACE FUNCTION tock.checked_run_filter(p_filter jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_key text;
    v_value jsonb;
    v_statuses text[];
    v_result jsonb := '{}';
BEGIN
    IF p_filter IS NULL THEN
        RETURN v_result;
    END IF;
    IF jsonb_typeof(p_filter) <> 'object' THEN
        PERFORM tock.raise_invalid('filter', 'expected a JSON object of status, job, trigger, worker, pool, since, until');
    END IF;
    FOR v_key, v_value IN SELECT * FROM jsonb_each(p_filter) LOOP
        IF v_key NOT IN ('status', 'job', 'trigger', 'worker', 'pool', 'since', 'until') THEN
            PERFORM tock.raise_invalid(left(v_key, 40), 'unknown filter; filter on status, job, trigger, worker, pool, since, until');
        END IF;
        CONTINUE WHEN jsonb_typeof(v_value) = 'null' OR v_value = '""' OR v_value = '[]';
        IF v_key = 'status' AND jsonb_typeof(v_value) = 'array' THEN
            IF jsonb_array_length(v_value) > 7 OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_value) e WHERE jsonb_typeof(e) <> 'string') THEN
                PERFORM tock.raise_invalid('status', 'expected a list of at most 7 statuses');
            END IF;
            v_statuses := ARRAY(SELECT lower(e) FROM jsonb_array_elements_text(v_value) e);
        ELSIF jsonb_typeof(v_value) <> 'string' OR length(v_value #>> '{}') > 200 THEN
            PERFORM tock.raise_invalid(v_key, 'expected text of at most 200 characters');
        ELSIF v_key = 'status' THEN
            v_statuses := string_to_array(lower(replace(v_value #>> '{}', ' ', '')), ',');
        END IF;
        CASE v_key
        WHEN 'status' THEN
            IF EXISTS (SELECT 1 FROM unnest(v_statuses) s
                       WHERE s NOT IN ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'dead')) THEN
                PERFORM tock.raise_invalid('status', format('%L: a status is pending, running, succeeded, failed, timed_out, cancelled or dead',
                                                            left(array_to_string(v_statuses, ','), 80)));
            END IF;
            v_result := v_result || jsonb_build_object('statuses', to_jsonb(ARRAY(SELECT DISTINCT unnest(v_statuses))));
        WHEN 'job' THEN
            v_result := v_result || jsonb_build_object('job_id', tock.find_job(v_value #>> '{}'));
        WHEN 'trigger' THEN
            IF (v_value #>> '{}') NOT IN ('schedule', 'manual', 'sql', 'api', 'retry', 'chain') THEN
                PERFORM tock.raise_invalid('trigger', format('%L is not schedule, manual, sql, api, retry or chain', left(v_value #>> '{}', 40)));
            END IF;
            v_result := v_result || jsonb_build_object('trigger', v_value #>> '{}');
        WHEN 'worker', 'pool' THEN
            v_result := v_result || jsonb_build_object(v_key, v_value #>> '{}');
        ELSE
            v_result := v_result || jsonb_build_object(v_key, tock.filter_time(v_key, v_value #>> '{}'));
        END CASE;
    END LOOP;
    RETURN v_result;
END $$;

-- The WHERE of one half of tock.run_history (in flight or finished) for a checked filter, over parameters $1
-- (statuses), $2 (job id), $3 (trigger), $4 (worker), $5 (pool), $6 (since), $7 (until), $8 (before: ids below).
-- Only the conditions the filter has are written, so each query is planned for them: a job's runs walk its job
-- index, a failed status walks finished_runs_unsuccessful_idx, a time range prunes the history's partitions.
CREATE OR REPLACE FUNCTION tock.run_filter_sql(p_filter jsonb, p_finished boolean, p_before bigint)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(' AND ', 'true',
        CASE WHEN p_filter ? 'statuses' THEN 'r.status = ANY ($1)' END,
        -- Written out, so that the planner sees the partial index's predicate implied.
        CASE WHEN p_finished AND p_filter ? 'statuses' AND NOT p_filter -> 'statuses' ? 'succeeded' THEN 'r.status <> ''succeeded''' END,
        CASE WHEN p_filter ? 'job_id' THEN 'r.job_id = $2' END,
        CASE WHEN p_filter ? 'trigger' THEN 'r.trigger = $3' END,
        CASE WHEN p_filter ? 'worker' THEN 'r.worker_id IN (SELECT w.id FROM tock.workers w WHERE w.name = $4)' END,
        CASE WHEN p_filter ? 'pool' THEN 'r.pool = $5' END,
        CASE WHEN p_filter ? 'since' THEN CASE WHEN p_finished THEN 'r.finished_at >= $6' ELSE 'r.enqueued_at >= $6' END END,
        CASE WHEN p_filter ? 'until' THEN CASE WHEN p_finished THEN 'r.finished_at < $7' ELSE 'r.enqueued_at < $7' END END,
        CASE WHEN p_before IS NOT NULL THEN 'r.id < $8' END,
        -- The runs a bulk action applies to (tock.bulk_runs adds these keys; a caller's filter cannot).
        CASE WHEN p_filter ->> 'action' = 'retry' THEN
            CASE WHEN p_finished THEN 'r.status <> ''succeeded'' AND r.retried_by IS NULL' ELSE 'false' END END,
        CASE WHEN p_filter ->> 'action' = 'cancel' THEN
            CASE WHEN p_finished THEN 'false' ELSE 'r.cancel_requested_at IS NULL' END END,
        CASE WHEN p_filter ->> 'action' = 'delete' AND NOT p_finished THEN 'false' END)
$$;

-- Whether a checked filter can match runs of one half: the finished (p_finished) or those in flight. A status
-- filter of pending and running only reads no finished run, one of ended statuses only no run in flight.
CREATE OR REPLACE FUNCTION tock.run_filter_reads_half(p_filter jsonb, p_finished boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT NOT p_filter ? 'statuses'
        OR CASE WHEN p_finished THEN NOT ARRAY(SELECT jsonb_array_elements_text(p_filter -> 'statuses')) <@ ARRAY['pending', 'running']
                ELSE ARRAY(SELECT jsonb_array_elements_text(p_filter -> 'statuses')) && ARRAY['pending', 'running'] END
$$;

-- Runs of every job matching a filter (tock.checked_run_filter's keys), newest first: ids below p_before (paging),
-- at most p_limit (1000). Like tock.recent_runs, the page is the newest of each half's newest, each a backward walk
-- of one index, so a page costs the same at the top of a long history as deep in it.
CREATE OR REPLACE FUNCTION tock.find_runs(p_filter jsonb DEFAULT NULL, p_before bigint DEFAULT NULL, p_limit int DEFAULT 50)
RETURNS SETOF tock.run_history LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('limit', format('%s is not from 1 to 1000', p_limit));
    END IF;
    RETURN QUERY SELECT * FROM tock.find_checked_runs(tock.checked_run_filter(p_filter), p_before, p_limit);
END $$;
COMMENT ON FUNCTION tock.find_runs(jsonb, bigint, int) IS
    'Runs matching {"status", "job", "trigger", "worker", "pool", "since", "until"} from tock.run_history, newest first, ids below p_before, at most p_limit (1000).';

-- tock.find_runs for a filter tock.checked_run_filter has checked (and tock.bulk_runs may have narrowed to an action).
CREATE OR REPLACE FUNCTION tock.find_checked_runs(v_filter jsonb, p_before bigint, p_limit int)
RETURNS SETOF tock.run_history LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_statuses constant text[] := ARRAY(SELECT jsonb_array_elements_text(v_filter -> 'statuses'));
    v_in_flight constant boolean := tock.run_filter_reads_half(v_filter, false);
    v_finished constant boolean := tock.run_filter_reads_half(v_filter, true);
BEGIN
    RETURN QUERY EXECUTE format('
        SELECT v.* FROM (
            (SELECT r.* FROM tock.run_history_finished r WHERE %s AND %s ORDER BY r.id DESC LIMIT $9)
            UNION ALL
            (SELECT r.* FROM tock.run_history_in_flight r WHERE %s AND %s ORDER BY r.id DESC LIMIT $9)
        ) v
        ORDER BY v.id DESC LIMIT $9',
        v_finished::text, tock.run_filter_sql(v_filter, true, p_before),
        v_in_flight::text, tock.run_filter_sql(v_filter, false, p_before))
    USING v_statuses, (v_filter ->> 'job_id')::bigint, v_filter ->> 'trigger', v_filter ->> 'worker', v_filter ->> 'pool',
          (v_filter ->> 'since')::timestamptz, (v_filter ->> 'until')::timestamptz, p_before, p_limit;
END $$;

-- Filter keys no index of the runs serves: a filter on them alone walks its span's runs one by one, and one that
-- matches few of them reads all of them (a week of a busy history is millions of rows).
CREATE OR REPLACE FUNCTION tock.unindexed_run_filter_keys()
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY['trigger', 'worker', 'pool'] $$;

-- Each half of the runs (finished, in flight) as the bounded searches of tock.find_runs_page and tock.count_runs
-- read it: its newest p_scan ($10) runs that the filter's indexed keys select, from the table alone, each with
-- whether the rest of the filter matches it (m) and its place in the walk (n). A walk stops at its p_scan-th run,
-- so the row whose n is p_scan says how far that half was searched.
CREATE OR REPLACE FUNCTION tock.bounded_run_scan_sql(v_filter jsonb, p_finished boolean, p_before bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format('
        SELECT r.id, %s AS m, row_number() OVER (ORDER BY r.id DESC) AS n
        FROM (SELECT r.* FROM %s r WHERE %s AND %s ORDER BY r.id DESC LIMIT $10) r',
        tock.run_filter_sql(v_filter - ARRAY(SELECT k FROM jsonb_object_keys(v_filter) k
                                             WHERE k <> ALL (tock.unindexed_run_filter_keys())), p_finished, NULL),
        CASE WHEN p_finished THEN 'tock.finished_runs' ELSE 'tock.runs' END,
        CASE WHEN p_finished THEN 'r.finished_at >= now() - (SELECT c.history_retention FROM tock.config c)' ELSE 'true' END,
        tock.run_filter_sql(v_filter - tock.unindexed_run_filter_keys(), p_finished, p_before))
$$;

-- A page of tock.find_runs for the API and portal, whose search is bounded: a filter on trigger, worker or pool
-- (tock.unindexed_run_filter_keys) reads at most the newest p_scan (40,000) runs of each half below p_before,
-- instead of its whole span. Returns {"runs": [... newest first, at most p_limit ...], "searched_to_id",
-- "searched_to"}: when the search stopped at its bound before the page filled, searched_to_id is the oldest run
-- it read (matches below it are left for the next page: p_before = searched_to_id) and searched_to that run's
-- time (finish, or enqueue for a run in flight); both null when the page is complete as tock.find_runs's is.
CREATE OR REPLACE FUNCTION tock.find_runs_page(p_filter jsonb DEFAULT NULL, p_before bigint DEFAULT NULL,
                                               p_limit int DEFAULT 50, p_scan int DEFAULT 40000)
RETURNS jsonb LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    v_filter constant jsonb := tock.checked_run_filter(p_filter);
    v_statuses constant text[] := ARRAY(SELECT jsonb_array_elements_text(v_filter -> 'statuses'));
    v_in_flight constant boolean := tock.run_filter_reads_half(v_filter, false);
    v_finished constant boolean := tock.run_filter_reads_half(v_filter, true);
    v_found bigint[];
    v_ends bigint[];
    v_searched bigint;
    v_ids bigint[];
    v_runs jsonb;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('limit', format('%s is not from 1 to 1000', p_limit));
    END IF;
    IF p_scan IS NULL OR p_scan NOT BETWEEN 1 AND 1000000 THEN
        PERFORM tock.raise_invalid('scan', format('%s is not from 1 to 1000000', p_scan));
    END IF;
    IF NOT v_filter ?| tock.unindexed_run_filter_keys() THEN
        SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id DESC), '[]') INTO v_runs
        FROM tock.find_checked_runs(v_filter, p_before, p_limit) r;
        RETURN jsonb_build_object('runs', v_runs, 'searched_to_id', NULL, 'searched_to', NULL);
    END IF;
    -- Each half's matches (at most a page and one) and, when its walk reached its bound first, where it stopped.
    EXECUTE format('
        SELECT array_agg(s.id) FILTER (WHERE s.m), array_agg(s.id) FILTER (WHERE s.n = $10)
        FROM (
            (SELECT h.id, h.m, h.n FROM (%s) h WHERE %s AND (h.m OR h.n = $10) ORDER BY h.id DESC LIMIT $9 + 1)
            UNION ALL
            (SELECT h.id, h.m, h.n FROM (%s) h WHERE %s AND (h.m OR h.n = $10) ORDER BY h.id DESC LIMIT $9 + 1)
        ) s',
        tock.bounded_run_scan_sql(v_filter, true, p_before), v_finished::text,
        tock.bounded_run_scan_sql(v_filter, false, p_before), v_in_flight::text)
    INTO v_found, v_ends
    USING v_statuses, (v_filter ->> 'job_id')::bigint, v_filter ->> 'trigger', v_filter ->> 'worker', v_filter ->> 'pool',
          (v_filter ->> 'since')::timestamptz, (v_filter ->> 'until')::timestamptz, p_before, p_limit, p_scan;
    -- Above the higher of the two stops both halves were read through; below it one was not, so its matches wait.
    v_searched := (SELECT max(e) FROM unnest(v_ends) e);
    v_ids := ARRAY(SELECT f FROM unnest(v_found) f WHERE f >= coalesce(v_searched, 0) ORDER BY f DESC LIMIT p_limit);
    SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id DESC), '[]') INTO v_runs
    FROM tock.run_history r WHERE r.id = ANY (v_ids);
    IF v_searched IS NULL OR cardinality(v_ids) = p_limit THEN
        RETURN jsonb_build_object('runs', v_runs, 'searched_to_id', NULL, 'searched_to', NULL);
    END IF;
    RETURN jsonb_build_object('runs', v_runs, 'searched_to_id', v_searched,
        'searched_to', (SELECT coalesce(r.finished_at, r.enqueued_at) FROM tock.run_history r WHERE r.id = v_searched));
END $$;
COMMENT ON FUNCTION tock.find_runs_page(jsonb, bigint, int, int) IS
    'tock.find_runs with a bounded search: a filter on trigger, worker or pool reads at most p_scan runs per half; {runs, searched_to_id, searched_to}.';

-- How many runs a filter matches, counted up to p_cap (10,000) and no further: what a bulk action's confirmation
-- shows ("10,000 or more"). Returns the count and whether it stopped at the cap.
-- p_action (retry, cancel, delete): only the runs that action would act on (tock.bulk_runs).
-- p_scan: the search of a filter on trigger, worker or pool is bounded as tock.find_runs_page's is; the count is
-- then of the matches among the runs it read, and searched_to_id the higher of the two halves' stops (null when
-- neither stopped short).
DROP FUNCTION IF EXISTS tock.count_runs(jsonb, int);
DROP FUNCTION IF EXISTS tock.count_runs(jsonb, int, text);
CREATE OR REPLACE FUNCTION tock.count_runs(p_filter jsonb DEFAULT NULL, p_cap int DEFAULT 10000, p_action text DEFAULT NULL,
                                           p_scan int DEFAULT NULL,
                                           OUT count bigint, OUT capped boolean, OUT searched_to_id bigint)
LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    v_filter constant jsonb := tock.checked_run_filter(p_filter) || tock.bulk_action_filter(p_action);
    v_statuses constant text[] := ARRAY(SELECT jsonb_array_elements_text(v_filter -> 'statuses'));
    v_in_flight constant boolean := tock.run_filter_reads_half(v_filter, false);
    v_finished constant boolean := tock.run_filter_reads_half(v_filter, true);
BEGIN
    IF p_cap IS NULL OR p_cap NOT BETWEEN 1 AND 100000 THEN
        PERFORM tock.raise_invalid('cap', format('%s is not from 1 to 100000', p_cap));
    END IF;
    IF p_scan IS NOT NULL AND p_scan NOT BETWEEN 1 AND 1000000 THEN
        PERFORM tock.raise_invalid('scan', format('%s is not from 1 to 1000000', p_scan));
    END IF;
    IF p_scan IS NOT NULL AND p_action IS NULL AND v_filter ?| tock.unindexed_run_filter_keys() THEN
        EXECUTE format('
            SELECT coalesce(sum(c.found), 0), max(c.stop) FROM (
                (SELECT count(*) FILTER (WHERE h.m) AS found, max(h.id) FILTER (WHERE h.n = $10) AS stop FROM (%s) h WHERE %s)
                UNION ALL
                (SELECT count(*) FILTER (WHERE h.m), max(h.id) FILTER (WHERE h.n = $10) FROM (%s) h WHERE %s)
            ) c',
            tock.bounded_run_scan_sql(v_filter, true, NULL), v_finished::text,
            tock.bounded_run_scan_sql(v_filter, false, NULL), v_in_flight::text)
        INTO count, searched_to_id
        USING v_statuses, (v_filter ->> 'job_id')::bigint, v_filter ->> 'trigger', v_filter ->> 'worker', v_filter ->> 'pool',
              (v_filter ->> 'since')::timestamptz, (v_filter ->> 'until')::timestamptz, NULL::bigint, p_cap, p_scan;
        capped := count > p_cap;
        count := least(count, p_cap);
        RETURN;
    END IF;
    EXECUTE format('
        SELECT count(*) FROM (
            (SELECT 1 FROM tock.run_history_finished r WHERE %s LIMIT $9)
            UNION ALL
            (SELECT 1 FROM tock.run_history_in_flight r WHERE %s LIMIT $9)
        ) v',
        tock.run_filter_sql(v_filter, true, NULL), tock.run_filter_sql(v_filter, false, NULL))
    INTO count
    USING v_statuses, (v_filter ->> 'job_id')::bigint, v_filter ->> 'trigger', v_filter ->> 'worker', v_filter ->> 'pool',
          (v_filter ->> 'since')::timestamptz, (v_filter ->> 'until')::timestamptz, NULL::bigint, p_cap + 1;
    capped := count > p_cap;
    count := least(count, p_cap);
END $$;
COMMENT ON FUNCTION tock.count_runs(jsonb, int, text, int) IS
    'How many runs tock.find_runs''s filter matches (that p_action would act on), up to p_cap (10,000); capped says it matched more; p_scan bounds the search as tock.find_runs_page''s.';

-- The filter key that narrows a filter to the runs a bulk action applies to; raises for an unknown action.
CREATE OR REPLACE FUNCTION tock.bulk_action_filter(p_action text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_action IS NULL THEN
        RETURN '{}';
    END IF;
    IF p_action NOT IN ('retry', 'cancel', 'delete') THEN
        PERFORM tock.raise_invalid('action', format('%L is not retry, cancel or delete', left(p_action, 40)));
    END IF;
    RETURN jsonb_build_object('action', p_action);
END $$;

-- A bulk action on runs, in one transaction, recorded as one audit entry:
--   retry   each run that ended other than succeeded runs again as a new attempt with its values (tock.retry's rule);
--   cancel  each pending run is cancelled at once, each running one is asked to stop (tock.cancel's rule);
--   delete  each ended run leaves the history, with its output (a run in flight is cancelled first, not deleted).
-- The runs: p_ids (at most 1000), or the newest p_limit (at most 1000) that p_filter (tock.find_runs's) matches;
-- more says the filter matched more, for the caller to repeat. A run the action does not apply to is skipped and
-- counted, not an error: a selection made a moment ago may have moved on. Returns {action, selected, done,
-- skipped, run_ids (the runs acted on), new_run_ids (retry), more}.
CREATE OR REPLACE FUNCTION tock.bulk_runs(p_action text, p_ids bigint[] DEFAULT NULL, p_filter jsonb DEFAULT NULL,
                                          p_limit int DEFAULT 1000, p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_more boolean := false;
    v_done bigint[] := '{}';
    v_new bigint[] := '{}';
    v_cancel record;
    v_result jsonb;
    v_job bigint;
    v_row record;
    v_filter jsonb;
BEGIN
    p_now := tock.checked_now(p_now);
    IF p_action IS NULL OR p_action NOT IN ('retry', 'cancel', 'delete') THEN
        PERFORM tock.raise_invalid('action', format('%L is not retry, cancel or delete', left(coalesce(p_action, ''), 40)));
    END IF;
    -- One bulk action at a time: two retries of the same filter at once would both take the same runs.
    PERFORM pg_advisory_xact_lock(tock.worker_lock_key() + 7, 0);
    IF (p_ids IS NULL) = (p_filter IS NULL) THEN
        PERFORM tock.raise_invalid('ids', 'give the runs (ids) or a filter, one of the two');
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('limit', format('%s is not from 1 to 1000', p_limit));
    END IF;
    IF p_ids IS NOT NULL THEN
        IF cardinality(p_ids) > 1000 THEN
            PERFORM tock.raise_invalid('ids', format('%s runs: at most 1000 a call', cardinality(p_ids)));
        END IF;
        v_ids := ARRAY(SELECT DISTINCT i FROM unnest(p_ids) i WHERE i IS NOT NULL ORDER BY i DESC);
    ELSE
        v_filter := tock.checked_run_filter(p_filter);
        IF v_filter = '{}' THEN
            PERFORM tock.raise_invalid('filter', 'give at least one condition (status, job, since, …): an action on every run is not a bulk action Tock takes');
        END IF;
        -- Only the runs the action applies to, so that the next call goes on to the next ones.
        v_ids := ARRAY(SELECT f.id FROM tock.find_checked_runs(v_filter || tock.bulk_action_filter(p_action), NULL, p_limit + 1) f);
        IF cardinality(v_ids) > p_limit THEN
            v_more := true;
            v_ids := v_ids[1:p_limit];
        END IF;
    END IF;

    -- The runs' job, when they are all of one: the entry is then in that job's history too.
    SELECT CASE WHEN count(DISTINCT x.job_id) = 1 THEN min(x.job_id) END INTO v_job
    FROM (SELECT r.job_id FROM tock.runs r WHERE r.id = ANY (v_ids)
          UNION ALL SELECT f.job_id FROM tock.finished_runs f WHERE f.id = ANY (v_ids)) x;

    CASE p_action
    WHEN 'retry' THEN
        -- One at a time, so that each run names its own retry (runs of one chain may be selected together).
        FOR v_row IN
            SELECT f.id FROM tock.finished_runs f
            WHERE f.id = ANY (v_ids) AND f.status <> 'succeeded' AND f.retried_by IS NULL
            ORDER BY f.id
        LOOP
            v_new := v_new || tock.enqueue_retry(v_row.id, p_now);
            v_done := v_done || v_row.id;
        END LOOP;
    WHEN 'cancel' THEN
        v_cancel := tock.cancel_runs(v_ids, p_now);
        v_done := ARRAY(SELECT i FROM unnest(v_cancel.cancelled || v_cancel.cancelling) i ORDER BY i);
    ELSE
        WITH gone AS (
            DELETE FROM tock.finished_runs f WHERE f.id = ANY (v_ids) RETURNING f.id
        )
        SELECT coalesce(array_agg(g.id ORDER BY g.id), '{}') INTO v_done FROM gone g;
    END CASE;

    v_result := jsonb_build_object('action', p_action, 'selected', cardinality(v_ids), 'done', cardinality(v_done),
                                   'skipped', cardinality(v_ids) - cardinality(v_done), 'run_ids', to_jsonb(v_done),
                                   'more', v_more)
                || CASE WHEN p_action = 'retry' THEN jsonb_build_object('new_run_ids', to_jsonb(v_new)) ELSE '{}' END;
    PERFORM tock.audit_write('runs.' || p_action, v_job, (SELECT j.name FROM tock.jobs j WHERE j.id = v_job), NULL,
                             jsonb_strip_nulls(jsonb_build_object('filter', p_filter, 'ids', to_jsonb(p_ids),
                                                                  'selected', cardinality(v_ids))),
                             v_result - 'action' - 'selected');
    RETURN v_result;
END $$;
COMMENT ON FUNCTION tock.bulk_runs(text, bigint[], jsonb, int, timestamptz) IS
    'Retries, cancels or deletes the runs p_ids names, or the newest p_limit (1000) p_filter matches, in one transaction; returns what it did.';

-- The last p_lines lines of a run's output, at most 2,000 characters: what a failure list shows of it.
CREATE OR REPLACE FUNCTION tock.last_lines(p_output text, p_lines int DEFAULT 5)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT right(array_to_string(l[greatest(1, cardinality(l) - p_lines + 1):], E'\n'), 2000)
    FROM (SELECT string_to_array(rtrim(right(p_output, 20000), E'\n'), E'\n') AS l) s
    WHERE p_output IS NOT NULL AND p_output <> ''
$$;

-- The jobs whose runs failed, timed out or died since p_since, most recent failure first (at most 500 jobs): how
-- many of each, and the last one's error and last lines of output, one run per job.
-- p_since as a filter's time is: '1h', '24h', '7d' or a timestamp. The span's failures come from
-- finished_runs_failures_idx alone (index-only: job, status, id by finish time), whatever else the span holds,
-- counted per job with plain aggregates (an ordered one, array_agg … ORDER BY, sorts each job's failures apart). A
-- job's last failure is then fetched by its finish time, which names its one partition; of two that ended in the
-- same microsecond, the later id.
-- Planned for the time given (EXECUTE … USING), as a statement from a client is.
DROP FUNCTION IF EXISTS tock.failure_groups(timestamptz);
CREATE OR REPLACE FUNCTION tock.failure_groups(p_since text DEFAULT '24h')
RETURNS TABLE (job_id bigint, job_name text, failures bigint, failed bigint, timed_out bigint, dead bigint,
               last_run_id bigint, last_status text, last_error text, last_finished_at timestamptz, last_output text)
LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    v_asked constant timestamptz := tock.recent_time('since', p_since, interval '31 days');
    v_since constant timestamptz := greatest(v_asked, now() - (SELECT c.history_retention FROM tock.config c));
BEGIN
    IF v_asked IS NULL THEN
        RETURN;  -- no time, no failures since it
    END IF;
    RETURN QUERY EXECUTE '
        WITH f AS (
            SELECT r.job_id, count(*) AS failures,
                   count(*) FILTER (WHERE r.status = ''failed'') AS failed,
                   count(*) FILTER (WHERE r.status = ''timed_out'') AS timed_out,
                   count(*) FILTER (WHERE r.status = ''dead'') AS dead,
                   max(r.finished_at) AS last_finished_at
            FROM tock.finished_runs r
            WHERE r.finished_at >= $1 AND r.status IN (''failed'', ''timed_out'', ''dead'')
            GROUP BY r.job_id
            ORDER BY max(r.finished_at) DESC
            LIMIT 500
        )
        SELECT f.job_id, j.name, f.failures, f.failed, f.timed_out, f.dead, l.id, l.status, l.error, l.finished_at,
               tock.last_lines(l.output)
        FROM f
        JOIN tock.jobs j ON j.id = f.job_id
        CROSS JOIN LATERAL (SELECT r.id, r.status, r.error, r.finished_at, r.output FROM tock.finished_runs r
                            WHERE r.finished_at = f.last_finished_at AND r.job_id = f.job_id
                              AND r.status IN (''failed'', ''timed_out'', ''dead'')
                            ORDER BY r.id DESC LIMIT 1) l
        ORDER BY f.last_finished_at DESC, l.id DESC'
    USING v_since;
END $$;
COMMENT ON FUNCTION tock.failure_groups(text) IS
    'Per job, the runs that failed, timed out or died since p_since, with the last one''s error and last output lines.';

-- Runs that ended, and those that failed (failed, timed_out, dead), per p_bucket over the p_span before now: the
-- dashboard's chart. Every bucket is there, empty or not, oldest first. Buckets and span are whole minutes, so that
-- the buckets are sums of tock.ended_counts' minutes: the cost is the span's minutes, not its runs.
CREATE OR REPLACE FUNCTION tock.activity(p_span interval DEFAULT '24 hours', p_bucket interval DEFAULT '15 minutes')
RETURNS TABLE (bucket_start timestamptz, ended bigint, failed bigint) LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    v_bucket_seconds float8;
    v_end timestamptz;
    v_start timestamptz;
BEGIN
    IF p_span IS NULL OR p_bucket IS NULL OR p_span NOT BETWEEN interval '1 hour' AND interval '31 days'
       OR p_bucket < interval '1 minute' OR extract(epoch FROM p_span) / extract(epoch FROM p_bucket) > 2000
       OR extract(epoch FROM p_span) % 60 <> 0 OR extract(epoch FROM p_bucket) % 60 <> 0 THEN
        PERFORM tock.raise_invalid('span', 'a span of 1 hour to 31 days, in at most 2,000 buckets of whole minutes');
    END IF;
    v_bucket_seconds := extract(epoch FROM p_bucket);
    v_end := to_timestamp(ceil(extract(epoch FROM now()) / v_bucket_seconds) * v_bucket_seconds);
    v_start := v_end - p_span;
    RETURN QUERY
    WITH counted AS (
        SELECT floor(extract(epoch FROM e.minute - v_start) / v_bucket_seconds)::int AS slot, sum(e.runs)::bigint AS ended,
               coalesce(sum(e.runs) FILTER (WHERE e.status IN ('failed', 'timed_out', 'dead')), 0)::bigint AS failed
        FROM tock.ended_counts(greatest(v_start, now() - (SELECT c.history_retention FROM tock.config c)), v_end) e
        GROUP BY 1
    )
    SELECT v_start + s * p_bucket, coalesce(c.ended, 0), coalesce(c.failed, 0)
    FROM generate_series(0, (extract(epoch FROM p_span) / v_bucket_seconds)::int - 1) s
    LEFT JOIN counted c ON c.slot = s
    ORDER BY s;
END $$;
COMMENT ON FUNCTION tock.activity(interval, interval) IS
    'Runs ended and failed per bucket (default 15 minutes) over a span (default 24 hours), oldest first, empty buckets included.';
