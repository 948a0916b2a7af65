-- What the portal and other watchers read: change events, live output, statistics, scheduler liveness.

-- Change events on channel tock_events, one per statement (a claim of 100 runs is one event), each a small
-- JSON object: {"type": "runs", "jobs": [ids], "runs": [ids]}, {"type": "jobs", "jobs": [ids]},
-- {"type": "workers"} or {"type": "output", "run": id}. At most 50 ids each, so a payload stays far below
-- NOTIFY's 8000 bytes; a watcher that sees 50 should re-read everything.
CREATE OR REPLACE FUNCTION tock.tg_runs__event()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_payload text;
BEGIN
    SELECT json_build_object('type', 'runs',
                             'jobs', (SELECT json_agg(DISTINCT job_id) FROM (SELECT job_id FROM changed LIMIT 50) j),
                             'runs', (SELECT json_agg(id) FROM (SELECT id FROM changed LIMIT 50) r))::text
    INTO v_payload
    FROM (SELECT 1 FROM changed LIMIT 1) any_row;
    IF v_payload IS NOT NULL THEN
        PERFORM pg_notify('tock_events', v_payload);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER runs_event_inserted
    AFTER INSERT ON tock.runs REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_runs__event();
CREATE OR REPLACE TRIGGER runs_event_updated
    AFTER UPDATE ON tock.runs REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_runs__event();
-- A run that ends leaves tock.runs for tock.finished_runs (migration 0012).
CREATE OR REPLACE TRIGGER runs_event_deleted
    AFTER DELETE ON tock.runs REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_runs__event();

CREATE OR REPLACE FUNCTION tock.tg_jobs__event()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT json_build_object('type', 'jobs', 'jobs', json_agg(id), 'deleted', true)::text INTO v_payload
        FROM (SELECT id FROM gone LIMIT 50) j HAVING count(*) > 0;
    ELSE
        SELECT json_build_object('type', 'jobs', 'jobs', json_agg(id))::text INTO v_payload
        FROM (SELECT id FROM changed LIMIT 50) j HAVING count(*) > 0;
    END IF;
    IF v_payload IS NOT NULL THEN
        PERFORM pg_notify('tock_events', v_payload);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER jobs_event_inserted
    AFTER INSERT ON tock.jobs REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_jobs__event();
CREATE OR REPLACE TRIGGER jobs_event_updated
    AFTER UPDATE ON tock.jobs REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_jobs__event();
CREATE OR REPLACE TRIGGER jobs_event_deleted
    AFTER DELETE ON tock.jobs REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_jobs__event();

-- Workers: started, stopping, stopped or lost. Heartbeats (once a second per worker) are not events.
CREATE OR REPLACE FUNCTION tock.tg_workers__event()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tock_events', '{"type": "workers"}');
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER workers_event_changed
    AFTER INSERT OR UPDATE OF state ON tock.workers
    FOR EACH ROW EXECUTE FUNCTION tock.tg_workers__event();

-- The output of a run so far, sent by its worker while the script runs (about once a second while it
-- prints), so the portal can stream it. Only the worker holding the running run may write it.
DROP FUNCTION IF EXISTS tock.report_output(bigint, bigint, text, bigint, boolean, timestamptz);
CREATE OR REPLACE FUNCTION tock.report_output(
    p_run bigint, p_worker bigint, p_output text, p_bytes_total bigint, p_truncated boolean,
    p_now timestamptz DEFAULT now(), p_lease_token text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    p_now := tock.checked_now(p_now);
    -- FOR SHARE: a finish_run racing this call waits for it, so the final output is always written last. The
    -- run's row, not its lease: the claim's lease insert and this lock never meet.
    PERFORM 1 FROM tock.runs WHERE id = p_run AND status = 'running' AND worker_id = p_worker FOR SHARE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM tock.store_outputs(ARRAY[p_run], ARRAY[p_output], ARRAY[p_bytes_total], ARRAY[p_truncated], p_now);
    PERFORM pg_notify('tock_events', json_build_object('type', 'output', 'run', p_run)::text);
    RETURN true;
END $$;
COMMENT ON FUNCTION tock.report_output(bigint, bigint, text, bigint, boolean, timestamptz, text) IS
    'Stores what a running run has printed so far (its worker calls it while the script runs); false if not running there.';

-- Schedulers hold this shared advisory lock on their LISTEN connection for as long as they live, so
-- liveness costs no writes: PostgreSQL drops the lock the moment a scheduler's session ends.
CREATE OR REPLACE FUNCTION tock.scheduler_lock_key() RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT tock.worker_lock_key() + 2
$$;
COMMENT ON FUNCTION tock.scheduler_lock_key() IS
    'The advisory lock every scheduler holds (shared) while it runs: tock.schedulers_alive counts its holders.';

-- Only sessions that may run a scheduler count (the owner, or a tock_admin member): any login may take an advisory
-- lock, and one that did would make health say a scheduler was running when none was.
CREATE OR REPLACE FUNCTION tock.schedulers_alive()
RETURNS int LANGUAGE sql STABLE AS $$
    SELECT count(*)::int FROM pg_locks l
    JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = tock.scheduler_lock_key()::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (pg_has_role(a.usesysid, (SELECT nspowner FROM pg_namespace WHERE nspname = 'tock'), 'USAGE')
           OR pg_has_role(a.usesysid, coalesce((SELECT oid FROM pg_roles WHERE rolname = 'tock_admin'), 0), 'MEMBER'))
$$;
COMMENT ON FUNCTION tock.schedulers_alive() IS 'How many scheduler processes are connected (each holds a shared advisory lock).';

-- Per job over the last 24 hours and 7 days: runs that ended, success rate, duration percentiles, last failure.
CREATE OR REPLACE VIEW tock.job_stats AS
SELECT
    j.id AS job_id,
    j.name AS job_name,
    w.name AS period,
    count(r.id) AS runs,
    count(r.id) FILTER (WHERE r.status = 'succeeded') AS succeeded,
    count(r.id) FILTER (WHERE r.status <> 'succeeded') AS failed,
    round(count(r.id) FILTER (WHERE r.status = 'succeeded')::numeric / nullif(count(r.id), 0), 4)::float8 AS success_rate,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.finished_at - r.started_at))
        FILTER (WHERE r.started_at IS NOT NULL) AS p50_seconds,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM r.finished_at - r.started_at))
        FILTER (WHERE r.started_at IS NOT NULL) AS p95_seconds,
    max(extract(epoch FROM r.finished_at - r.started_at))::float8 AS max_seconds,
    max(r.finished_at) FILTER (WHERE r.status <> 'succeeded') AS last_failure_at
FROM tock.jobs j
CROSS JOIN (VALUES ('24h', interval '24 hours'), ('7d', interval '7 days')) w(name, span)
LEFT JOIN tock.finished_runs r ON r.job_id = j.id AND r.finished_at > now() - w.span
     AND r.finished_at >= now() - (SELECT c.history_retention FROM tock.config c)
GROUP BY j.id, j.name, w.name;
COMMENT ON VIEW tock.job_stats IS 'Per job and period (24h, 7d): runs ended, succeeded, failed, success rate, p50/p95/max duration, last failure.';

-- How many runs ended from p_from up to p_to, per minute and status, exactly as counting tock.finished_runs would
-- say: the whole minutes between are tock.run_counts' (migration 0027 keeps them), the parts of a minute at either
-- end are read from the runs, at most a minute of them each (finished_runs_finished_idx). A count over a day thus
-- reads about 3,000 rows whether the day held a thousand runs or ten million.
CREATE OR REPLACE FUNCTION tock.ended_counts(p_from timestamptz, p_to timestamptz DEFAULT 'infinity')
RETURNS TABLE (minute timestamptz, status text, runs bigint) LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    v_first timestamptz;  -- the first whole minute
    v_last timestamptz;   -- the end of the last whole minute
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR NOT isfinite(p_from) THEN
        PERFORM tock.raise_invalid('from', 'a finite time to count from, and a time (or infinity) to count up to');
    END IF;
    v_first := tock.minute_of(p_from);
    IF v_first < p_from THEN
        v_first := v_first + interval '1 minute';
    END IF;
    v_last := CASE WHEN isfinite(p_to) THEN tock.minute_of(p_to) ELSE p_to END;
    IF v_first >= v_last THEN
        v_first := p_to;
        v_last := p_to;
    END IF;
    RETURN QUERY
        SELECT c.minute, c.status, sum(c.runs)::bigint FROM tock.run_counts c
        WHERE c.minute >= v_first AND c.minute < v_last
        GROUP BY c.minute, c.status
        UNION ALL
        SELECT tock.minute_of(r.finished_at), r.status, count(*) FROM tock.finished_runs r
        WHERE r.finished_at >= p_from AND r.finished_at < least(v_first, p_to)
        GROUP BY 1, 2
        UNION ALL
        SELECT tock.minute_of(r.finished_at), r.status, count(*) FROM tock.finished_runs r
        WHERE r.finished_at >= greatest(v_last, p_from) AND r.finished_at < p_to
        GROUP BY 1, 2;
END $$;
COMMENT ON FUNCTION tock.ended_counts(timestamptz, timestamptz) IS
    'Runs that ended from p_from up to (not including) p_to, per minute and status, from tock.run_counts and the runs at either end.';

-- Everything GET /api/v1/stats shows, as one JSON document: runs by status over 24 h, the queue, workers and
-- schedulers alive. Its cost grows neither with the number of jobs nor with the history (the 24 hours' counts are
-- tock.ended_counts'); per-job figures are tock.job_stats (GET /api/v1/jobs/{job}/stats), one job at a time. The
-- queue is tock.queue_glance: exact up to 10,000 pending runs, capped beyond (queue.capped), because the dashboard
-- reads this on every change it sees and an exact count grows with the queue; exact figures stay in /health and
-- /metrics. The 24 h pending and running figures are the queue's.
CREATE OR REPLACE FUNCTION tock.stats(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE sql STABLE SET jit = off AS $$
    WITH queue AS MATERIALIZED (
        SELECT * FROM tock.queue_glance(10000, p_now)
    )
    SELECT jsonb_build_object(
        'generated_at', p_now,
        'runs_24h', (SELECT jsonb_object_agg(s.status, coalesce(c.n, 0))
                     FROM unnest(ARRAY['pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'dead']) s(status)
                     LEFT JOIN (SELECT 'pending' AS status, q.pending AS n FROM queue q
                                UNION ALL
                                SELECT 'running', q.running FROM queue q
                                UNION ALL
                                -- finished_at > p_now - 24 hours: timestamps are whole microseconds.
                                SELECT e.status, sum(e.runs) AS n
                                FROM tock.ended_counts(greatest(p_now - interval '24 hours' + interval '1 microsecond',
                                                                p_now - (SELECT c.history_retention FROM tock.config c))) e
                                GROUP BY e.status) c ON c.status = s.status),
        'queue', (SELECT to_jsonb(q) FROM queue q),
        'workers_alive', (SELECT count(*) FROM tock.worker_overview w WHERE w.alive),
        'schedulers_alive', tock.schedulers_alive())
$$;
COMMENT ON FUNCTION tock.stats(timestamptz) IS 'Counts by status (24 h), the queue (capped beyond 10,000 pending), oldest ready age, workers and schedulers alive.';
