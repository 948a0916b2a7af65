-- What a DBA runs and reads from psql: stuck runs, a job's next fire times, resetting a stuck job, history
-- retention, and the gauges /metrics reads. `tock runs --stuck`, `tock job reset` and the scheduler call these
-- (the queue's lag, which `tock queue` reads, is in 40_views.sql beside queue_depth).

-- A running run is stuck when it has outlived its timeout (plus the worker's time to stop it and report), or its
-- worker is no longer alive. While a scheduler runs, tock.rescue() recovers the second kind within seconds and the
-- first 10 minutes past the timeout; a row here that stays is what an operator should look at.
CREATE OR REPLACE VIEW tock.stuck_runs AS
SELECT
    r.id AS run_id,
    r.job_id,
    j.name AS job_name,
    r.worker_id,
    w.name AS worker_name,
    r.started_at,
    extract(epoch FROM now() - r.started_at)::float8 AS running_seconds,
    -- The timeout the worker enforces, fixed at the claim (timeout_at); the job's for runs claimed before 0008.
    extract(epoch FROM coalesce(r.timeout_at - r.started_at, j.timeout))::float8 AS timeout_seconds,
    CASE
        WHEN w.id IS NULL THEN 'its worker is gone from tock.workers'
        WHEN w.state NOT IN ('running', 'stopping') THEN format('its worker %s is %s', w.name, w.state)
        WHEN w.last_heartbeat_at < now() - interval '15 seconds' THEN
            format('its worker %s has not heartbeaten for %s s', w.name,
                   round(extract(epoch FROM now() - w.last_heartbeat_at)))
        ELSE format('running %s s, past its timeout of %s s', round(extract(epoch FROM now() - r.started_at)),
                    extract(epoch FROM coalesce(r.timeout_at - r.started_at, j.timeout)))
    END AS reason
FROM tock.runs r
JOIN tock.jobs j ON j.id = r.job_id
LEFT JOIN tock.workers w ON w.id = r.worker_id
WHERE r.status = 'running'
  AND (w.id IS NULL
       OR w.state NOT IN ('running', 'stopping')
       OR w.last_heartbeat_at < now() - interval '15 seconds'
       OR now() > coalesce(r.timeout_at, r.started_at + j.timeout) + interval '30 seconds');
COMMENT ON VIEW tock.stuck_runs IS 'Running runs past their timeout (+30 s) or whose worker is not alive, with the reason.';

-- What each run printed, apart from the run rows (tock.run_history has the sizes).
CREATE OR REPLACE VIEW tock.run_logs AS
SELECT o.run_id, o.output, o.bytes_total, o.truncated, o.updated_at
FROM tock.run_output o;
COMMENT ON VIEW tock.run_logs IS 'Each run''s output (stdout and stderr interleaved, the last bytes up to the worker''s cap).';

-- The next p_count fire times of a job, in UTC and in the job's own time zone.
CREATE OR REPLACE FUNCTION tock.schedule_preview(p_job text, p_count int DEFAULT 5, p_now timestamptz DEFAULT now())
RETURNS TABLE (fire_time timestamptz, local_time text, timezone text)
LANGUAGE sql STABLE AS $$
    SELECT t, to_char(t AT TIME ZONE j.timezone, 'YYYY-MM-DD HH24:MI:SS Dy'), j.timezone
    FROM tock.jobs j, tock.next_fire_times(j.schedule, j.timezone, p_now, p_count, j.anchor_at) t
    WHERE j.id = tock.find_job(p_job)
$$;
COMMENT ON FUNCTION tock.schedule_preview(text, int, timestamptz) IS
    'The next p_count fire times of a job (by name or id), with the local time in the job''s zone.';

-- The runs worker p_worker was asked to cancel. The worker reads it when a NOTIFY tock_cancel names a run it holds
-- (any login can send one, so it signals only the runs listed here) and after every (re)LISTEN, for those it missed.
DROP FUNCTION IF EXISTS tock.cancel_requests(bigint);
CREATE OR REPLACE FUNCTION tock.cancel_requests(p_worker bigint, p_lease_token text DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    RETURN QUERY SELECT id FROM tock.runs
    WHERE worker_id = p_worker AND status = 'running' AND cancel_requested_at IS NOT NULL;
END $$;

-- Clears a stuck job: its stuck runs (tock.stuck_runs) end 'failed' without a retry, and its schedule moves to the
-- next fire time after p_now, dropping the fire times it missed. Returns what it did, as JSON.
CREATE OR REPLACE FUNCTION tock.reset_job(p_job text, p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_job constant bigint := tock.find_job(p_job);
    v_ended bigint[];
    v_next timestamptz;
BEGIN
    p_now := tock.checked_now(p_now);
    WITH ended AS (
        UPDATE tock.runs r
        SET status = 'failed', finished_at = greatest(p_now, r.started_at),
            error = format('reset by tock.reset_job: %s', s.reason)
        FROM tock.stuck_runs s
        WHERE s.run_id = r.id AND r.job_id = v_job AND r.status = 'running'
        RETURNING r.id
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_ended FROM ended;
    UPDATE tock.jobs j
    SET next_run_at = CASE WHEN j.enabled THEN tock.next_fire_time(j.spec, j.timezone, p_now, j.anchor_at) END
    WHERE j.id = v_job
    RETURNING j.next_run_at INTO v_next;
    RETURN jsonb_build_object('job_id', v_job, 'runs_ended', to_jsonb(v_ended), 'next_run_at', v_next);
END $$;
COMMENT ON FUNCTION tock.reset_job(text, timestamptz) IS
    'Ends a job''s stuck runs (failed, no retry) and recomputes its next fire time from now; returns what it did.';

-- How long finished runs are kept (default 30 days; at least an hour).
CREATE OR REPLACE FUNCTION tock.set_history_retention(p_retention interval)
RETURNS interval LANGUAGE plpgsql AS $$
BEGIN
    IF p_retention IS NULL OR p_retention < interval '1 hour' THEN
        PERFORM tock.raise_invalid('retention', format('%s is shorter than an hour', coalesce(p_retention::text, 'NULL')));
    END IF;
    UPDATE tock.config SET history_retention = p_retention, updated_at = now();
    RETURN p_retention;
END $$;
COMMENT ON FUNCTION tock.set_history_retention(interval) IS 'Sets how long finished runs and their output are kept.';

-- Deletes up to p_batch finished runs older than tock.config.history_retention (their output goes with them),
-- oldest first, and workers stopped that long ago. An attempt chain goes whole, with its first run, once every
-- attempt in it is that old. SKIP LOCKED: schedulers may purge at once. The scheduler calls it in a loop of small
-- batches, so no statement holds many locks or bloats the queue's hot rows. Returns the chains deleted.
CREATE OR REPLACE FUNCTION tock.purge_history(p_now timestamptz DEFAULT now(), p_batch int DEFAULT NULL)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_cutoff constant timestamptz := tock.checked_now(p_now) - (SELECT history_retention FROM tock.config);
    v_batch constant int := least(coalesce(p_batch, (SELECT purge_batch FROM tock.config)), 100000);
    v_count int;
BEGIN
    WITH doomed AS (
        SELECT r.id FROM tock.runs r
        WHERE r.finished_at < v_cutoff AND r.first_run_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM tock.runs x
                          WHERE x.first_run_id = r.id AND (x.finished_at IS NULL OR x.finished_at >= v_cutoff))
        ORDER BY r.finished_at
        LIMIT v_batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM tock.runs r USING doomed d WHERE r.id = d.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    DELETE FROM tock.workers w
    WHERE w.state IN ('stopped', 'lost') AND w.stopped_at < v_cutoff
      AND NOT EXISTS (SELECT 1 FROM tock.runs r WHERE r.worker_id = w.id AND r.status = 'running');
    RETURN v_count;
END $$;
COMMENT ON FUNCTION tock.purge_history(timestamptz, int) IS
    'Deletes one batch of runs (with output) finished longer ago than tock.config.history_retention; returns how many.';

-- The figures only the database knows, as Prometheus gauges: GET /metrics sets them at each scrape, and psql users
-- can read them too. One row per gauge (and label set).
-- The queue is read once: tock.lag, materialized, gives the per-priority gauges and (totalled as tock.queue_depth
-- totals it) the queue's. Read through the views, each gauge would scan the pending runs again, at every scrape of
-- every process that serves /metrics.
CREATE OR REPLACE FUNCTION tock.gauges(p_now timestamptz DEFAULT now())
RETURNS TABLE (name text, help text, labels jsonb, value float8)
LANGUAGE sql STABLE AS $$
    WITH lag AS MATERIALIZED (
        SELECT * FROM tock.lag
    ), queue AS (
        SELECT coalesce(sum(l.ready), 0)::float8 AS ready, coalesce(sum(l.delayed), 0)::float8 AS delayed,
               coalesce(max(l.oldest_ready_age_seconds), 0)::float8 AS oldest_ready_age_seconds
        FROM lag l
    )
    SELECT 'tock_queue_runs', 'Runs pending (ready now or delayed) or running.', jsonb_build_object('state', s.state), s.n
    FROM queue q
    CROSS JOIN LATERAL (VALUES ('ready', q.ready), ('delayed', q.delayed),
                               ('running', (SELECT count(*) FROM tock.runs r WHERE r.status = 'running')::float8)) s(state, n)
    UNION ALL
    SELECT 'tock_queue_waiting_runs', 'Pending runs per priority.', jsonb_build_object('priority', l.priority::text), l.waiting
    FROM lag l
    UNION ALL
    SELECT 'tock_queue_oldest_ready_age_seconds', 'How long the oldest ready run has waited.', '{}', q.oldest_ready_age_seconds
    FROM queue q
    UNION ALL
    SELECT 'tock_workers_alive', 'Workers whose heartbeat is fresh.', '{}',
           (SELECT count(*) FROM tock.worker_overview w WHERE w.alive)
    UNION ALL
    SELECT 'tock_workers_claim_failing', 'Live workers whose claims keep failing (tock.worker_overview.claim_error).', '{}',
           (SELECT count(*) FROM tock.worker_overview w WHERE w.alive AND w.claim_error IS NOT NULL)
    UNION ALL
    SELECT 'tock_schedulers_alive', 'Scheduler processes connected.', '{}', tock.schedulers_alive()
    UNION ALL
    SELECT 'tock_stuck_runs', 'Runs past their timeout or on a dead worker (tock.stuck_runs).', '{}',
           (SELECT count(*) FROM tock.stuck_runs)
    UNION ALL
    SELECT 'tock_dead_runs', 'Dead letters: runs that used their last attempt, within the kept history.', '{}',
           (SELECT count(*) FROM tock.runs r WHERE r.status = 'dead')
    UNION ALL
    SELECT 'tock_jobs', 'Jobs, by state.', jsonb_build_object('state', s.state), s.n
    FROM (SELECT count(*) FILTER (WHERE j.enabled)::float8 AS enabled, count(*) FILTER (WHERE NOT j.enabled)::float8 AS paused
          FROM tock.jobs j) c
    CROSS JOIN LATERAL (VALUES ('enabled', c.enabled), ('paused', c.paused)) s(state, n)
$$;
COMMENT ON FUNCTION tock.gauges(timestamptz) IS 'Queue, workers, schedulers, stuck and dead runs as Prometheus gauges (name, help, labels, value).';
