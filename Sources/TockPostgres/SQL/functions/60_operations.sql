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
-- The running runs by id, from their leases, planned on their own (OFFSET 0): joined to the jobs, they were
-- planned, on the statistics of an empty queue, as a walk of every run in flight in job order (see tock.heartbeat).
FROM (SELECT * FROM tock.runs WHERE id = ANY (ARRAY(SELECT l.run_id FROM tock.run_leases l)) AND status = 'running'
      OFFSET 0) r
JOIN tock.jobs j ON j.id = r.job_id
LEFT JOIN tock.workers w ON w.id = r.worker_id
WHERE (w.id IS NULL
       OR w.state NOT IN ('running', 'stopping')
       OR w.last_heartbeat_at < now() - interval '15 seconds'
       OR now() > coalesce(r.timeout_at, r.started_at + j.timeout) + interval '30 seconds');
COMMENT ON VIEW tock.stuck_runs IS 'Running runs past their timeout (+30 s) or whose worker is not alive, with the reason.';

-- What each run printed, apart from the run rows (tock.run_history has the sizes): so far, for a run still running;
-- all of it (the last bytes kept), for one that ended within the retention and printed anything.
CREATE OR REPLACE VIEW tock.run_logs AS
SELECT o.run_id, o.output, o.bytes_total, o.truncated, o.updated_at
FROM tock.run_output o
WHERE EXISTS (SELECT 1 FROM tock.runs r WHERE r.id = o.run_id)
UNION ALL
SELECT f.id, f.output, f.output_bytes, f.output_truncated, f.finished_at
FROM tock.finished_runs f
WHERE f.output IS NOT NULL AND f.finished_at >= now() - (SELECT c.history_retention FROM tock.config c);
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
    RETURN QUERY SELECT r.id FROM tock.runs r
    WHERE r.id = ANY (ARRAY(SELECT l.run_id FROM tock.run_leases l WHERE l.worker_id = p_worker))
      AND r.worker_id = p_worker AND r.status = 'running'
      AND r.cancel_requested_at IS NOT NULL;
END $$;
COMMENT ON FUNCTION tock.cancel_requests(bigint, text) IS
    'The runs on this worker (presenting its lease token) whose cancel was requested: the worker stops them.';

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
    SELECT tock.end_runs('running', NULL, array_agg(s.run_id), array_agg('failed'::text), array_agg(NULL::int),
                         array_agg(format('reset by tock.reset_job: %s', s.reason)), array_agg(''::text),
                         array_agg(0::bigint), array_agg(false), p_now)
    INTO v_ended
    FROM tock.stuck_runs s WHERE s.job_id = v_job;
    v_ended := ARRAY(SELECT e FROM unnest(coalesce(v_ended, '{}')) e ORDER BY e);
    UPDATE tock.jobs j
    SET next_run_at = CASE WHEN j.enabled THEN tock.next_fire_time(j.spec, j.timezone, p_now, j.anchor_at) END
    WHERE j.id = v_job
    RETURNING j.next_run_at INTO v_next;
    PERFORM tock.audit_write('job.reset', v_job, (SELECT j.name FROM tock.jobs j WHERE j.id = v_job), NULL, NULL,
                             jsonb_build_object('runs_ended', to_jsonb(v_ended), 'next_run_at', v_next));
    RETURN jsonb_build_object('job_id', v_job, 'runs_ended', to_jsonb(v_ended), 'next_run_at', v_next);
END $$;
COMMENT ON FUNCTION tock.reset_job(text, timestamptz) IS
    'Ends a job''s stuck runs (failed, no retry) and recomputes its next fire time from now; returns what it did.';

-- How long finished runs are kept (default 30 days; at least a minute), and so how wide new history partitions are
-- (tock.history_partition_width). Partitions that hold runs keep their width; empty ones that reach further ahead
-- than the new width's maintenance would are made again at the new width, so a shorter retention partitions from
-- now rather than once they end (a new database's first partition reaches two days ahead). One that is busy (a
-- finish holds it) is left as it is.
CREATE OR REPLACE FUNCTION tock.set_history_retention(p_retention interval)
RETURNS interval LANGUAGE plpgsql AS $$
DECLARE
    v_width interval;
    v_ahead timestamptz;
    v_partition record;
    v_empty boolean;
BEGIN
    IF p_retention IS NULL OR p_retention < interval '1 minute' THEN
        PERFORM tock.raise_invalid('retention', format('%s is shorter than a minute', coalesce(p_retention::text, 'NULL')));
    END IF;
    v_width := tock.history_partition_width(p_retention);
    UPDATE tock.config SET history_retention = p_retention, history_partition = v_width, updated_at = now();
    -- One maintainer at a time (tock.purge_history's lock), and never a long wait for a partition's lock.
    PERFORM pg_advisory_xact_lock(tock.worker_lock_key() + 3, 0);
    PERFORM set_config('lock_timeout', '200ms', true);
    v_ahead := now() + greatest(2 * v_width, interval '5 minutes');
    FOR v_partition IN
        SELECT p.name FROM tock.history_partitions p WHERE NOT p.is_default AND p.upper > v_ahead ORDER BY p.upper
    LOOP
        BEGIN
            EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM tock.%I)', v_partition.name) INTO v_empty;
            IF v_empty THEN
                EXECUTE format('DROP TABLE tock.%I', v_partition.name);
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
    END LOOP;
    PERFORM tock.add_history_partitions(now(), v_ahead);
    RETURN p_retention;
END $$;
COMMENT ON FUNCTION tock.set_history_retention(interval) IS 'Sets how long finished runs and their output are kept.';

-- The partitions of tock.finished_runs, oldest first: their ranges of finish time (lower NULL: from the beginning;
-- both NULL: the default partition, which catches a finish no range covers), estimated rows and size on disk.
CREATE OR REPLACE VIEW tock.history_partitions AS
SELECT c.relname::text AS name, b.lower, b.upper, e.bound = 'DEFAULT' AS is_default,
       greatest(c.reltuples, 0)::bigint AS rows_estimate, pg_total_relation_size(c.oid) AS bytes
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) e
CROSS JOIN LATERAL (
    SELECT substring(e.bound FROM 'FROM \(''([^'']*)''\)')::timestamptz AS lower,
           substring(e.bound FROM 'TO \(''([^'']*)''\)')::timestamptz AS upper) b
WHERE i.inhparent = 'tock.finished_runs'::regclass
ORDER BY b.upper NULLS LAST;
COMMENT ON VIEW tock.history_partitions IS
    'Partitions of tock.finished_runs: finish-time range, estimated rows, bytes. Created ahead and dropped by tock.purge_history.';

-- Creates a partition of tock.finished_runs for each slot of tock.config.history_partition's width between p_from and
-- p_to that no partition covers. A slot that partitions of an older width reach into gets one for the rest of it,
-- from where they end (what lies between them, if anything, is left to the default partition). Each is created
-- apart and then attached, which locks tock.finished_runs only against other catalog changes (SHARE UPDATE
-- EXCLUSIVE): finishes go on; readers of the history wait, as the attach holds the default partition to the end of
-- the transaction. Runs the default partition caught in a new partition's range move into
-- it. Stops at the first lock it cannot get at once (lock_timeout), leaving the rest to the next call. Returns how
-- many it created.
CREATE OR REPLACE FUNCTION tock.add_history_partitions(p_from timestamptz, p_to timestamptz)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_width constant interval := (SELECT history_partition FROM tock.config);
    v_from timestamptz := date_bin(v_width, p_from, timestamptz '2000-01-03 00:00+00');  -- a Monday: weeks too
    v_to timestamptz;
    v_start timestamptz;
    v_name text;
    v_created int := 0;
BEGIN
    WHILE v_from < p_to LOOP
        v_to := v_from + v_width;
        SELECT greatest(v_from, coalesce(max(p.upper), v_from)) INTO v_start FROM tock.history_partitions p
        WHERE NOT p.is_default AND coalesce(p.lower, '-infinity') < v_to AND p.upper > v_from;
        IF v_start < v_to AND NOT EXISTS (SELECT 1 FROM tock.history_partitions p
                                          WHERE NOT p.is_default AND coalesce(p.lower, '-infinity') < v_to
                                            AND p.upper > v_start) THEN
            v_name := 'finished_runs_' || to_char(v_start AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI');
            BEGIN
                EXECUTE format('CREATE TABLE tock.%I (LIKE tock.finished_runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                               v_name);
                -- The range as a constraint first, so that attaching need not scan the table to check it.
                EXECUTE format('ALTER TABLE tock.%I ADD CONSTRAINT %I CHECK (finished_at >= %L AND finished_at < %L)',
                               v_name, v_name || '_range', v_start, v_to);
                -- Attaching checks that the default partition holds no run of the range: those move in first.
                EXECUTE format('WITH moved AS (DELETE FROM tock.finished_runs_default
                                               WHERE finished_at >= $1 AND finished_at < $2 RETURNING *)
                                INSERT INTO tock.%I SELECT * FROM moved', v_name) USING v_start, v_to;
                EXECUTE format('ALTER TABLE tock.finished_runs ATTACH PARTITION tock.%I FOR VALUES FROM (%L) TO (%L)',
                               v_name, v_start, v_to);
                v_created := v_created + 1;
            -- check_violation: a finish put a run of the range into the default partition between the move and
            -- the attach. Either way nothing of the partition is left, and the next call tries again.
            EXCEPTION WHEN lock_not_available OR check_violation THEN
                RAISE LOG 'tock: history partition % not created (%); the next maintenance will', v_name, SQLERRM;
                EXIT;
            END;
        END IF;
        v_from := v_to;
    END LOOP;
    RETURN v_created;
END $$;

-- The scheduler's history maintenance (every minute, from any number of schedulers: one at a time does it):
--   behind   a partition whose every run ended before the retention's horizon is dropped whole: no row is deleted,
--            nothing is left to vacuum, and the cost is the same for ten runs or ten million. Dropping takes an
--            exclusive lock of tock.finished_runs to the end of the call; it waits at most 200 ms for one (a long
--            reader), then gives up until the next call, so finishes never queue behind it for long. Once the
--            history holds two partitions more than the retention needs (a load whose statements hold the table
--            longer than that, call after call), it waits up to 2 s: finishes queue behind it that long, once, and
--            the history stays bounded (under a saturating load no 200 ms wait won, and the partitions piled up).
--            The runs a partition held are counted from tock.run_counts (its minutes), not by reading it.
--   ahead    then partitions cover the finish times from now to two partition widths (and at least 5 minutes)
--            ahead (tock.add_history_partitions).
--   default  runs the default partition caught (no range covered their finish time) go once past the horizon, at
--            most p_batch (tock.config.purge_batch) a call.
-- Workers stopped before the horizon with no run go too. Returns how many runs it removed.
CREATE OR REPLACE FUNCTION tock.purge_history(p_now timestamptz DEFAULT now(), p_batch int DEFAULT NULL)
RETURNS int LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    v_now constant timestamptz := tock.checked_now(p_now);
    v_horizon constant timestamptz := v_now - (SELECT history_retention FROM tock.config);
    v_width constant interval := (SELECT history_partition FROM tock.config);
    v_batch constant int := least(coalesce(p_batch, (SELECT purge_batch FROM tock.config)), 100000);
    v_partition record;
    v_rows bigint;
    v_count bigint := 0;
    v_round int;
    v_locked boolean := false;
BEGIN
    IF NOT pg_try_advisory_xact_lock(tock.worker_lock_key() + 3, 0) THEN
        RETURN 0;  -- another scheduler is at it
    END IF;
    PERFORM set_config('lock_timeout', '200ms', true);
    IF (SELECT min(p.upper) FROM tock.history_partitions p WHERE NOT p.is_default) < v_horizon - 2 * v_width THEN
        PERFORM set_config('lock_timeout', '2s', true);
    END IF;
    -- The history's table once, for all the drops, before this transaction holds any partition: a reader locks the
    -- table and then each partition, so waiting for the table while holding a partition (as the attach of a new
    -- partition, once done first, held the default one) deadlocked with a reader (a run-now did, in a soak). ONLY:
    -- each drop locks its own partition; the busy current one (autovacuum) is none of them.
    IF EXISTS (SELECT 1 FROM tock.history_partitions p WHERE NOT p.is_default AND p.upper <= v_horizon) THEN
        BEGIN
            LOCK TABLE ONLY tock.finished_runs IN ACCESS EXCLUSIVE MODE;
            v_locked := true;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            RAISE LOG 'tock: no history partition dropped (the history was busy); the next maintenance will';
        END;
    END IF;
    FOR v_partition IN
        SELECT p.name, p.lower, p.upper FROM tock.history_partitions p
        WHERE v_locked AND NOT p.is_default AND p.upper <= v_horizon ORDER BY p.upper
    LOOP
        BEGIN
            EXECUTE format('DROP TABLE tock.%I', v_partition.name);
            v_count := v_count + coalesce((SELECT sum(c.runs) FROM tock.run_counts c
                                           WHERE c.minute >= coalesce(v_partition.lower, '-infinity') AND c.minute < v_partition.upper), 0);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            RAISE LOG 'tock: history partition % not dropped (a lock was busy); the next maintenance will', v_partition.name;
            EXIT;
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', '200ms', true);
    -- After the drops: attaching a partition locks the default one exclusively until this transaction ends.
    PERFORM tock.add_history_partitions(v_now, v_now + greatest(2 * v_width, interval '5 minutes'));

    -- Through tock.finished_runs, so that its triggers count them out (tock.run_counts).
    DELETE FROM tock.finished_runs f
    WHERE f.tableoid = 'tock.finished_runs_default'::regclass AND f.finished_at < v_horizon
      AND f.ctid = ANY (ARRAY(SELECT d.ctid FROM tock.finished_runs_default d WHERE d.finished_at < v_horizon LIMIT v_batch));
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_count := v_count + v_rows;

    -- Run-now keys past their lifetime are forgotten (tock.run_now_keyed): in batches until none is left, up to
    -- 100 batches a call, so that a key a second, or a thousand, is kept up with. A key a caller holds (a run-now
    -- under way in an open transaction) waits for the next call rather than failing this one on lock_timeout.
    FOR v_round IN 1..100 LOOP
        DELETE FROM tock.trigger_keys
        WHERE ctid = ANY (ARRAY(SELECT k.ctid FROM tock.trigger_keys k
                                WHERE k.created_at < v_now - tock.trigger_key_lifetime()
                                LIMIT v_batch FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        EXIT WHEN v_rows < v_batch;
    END LOOP;

    -- Webhook deliveries made before the horizon, with their attempts (their runs are gone too): in batches until
    -- none is left, up to 100 a call; one a sender holds waits for the next call.
    FOR v_round IN 1..100 LOOP
        DELETE FROM tock.deliveries
        WHERE ctid = ANY (ARRAY(SELECT d.ctid FROM tock.deliveries d
                                WHERE d.created_at < v_horizon AND d.status <> 'sending'
                                LIMIT v_batch FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_count := v_count + v_rows;
        EXIT WHEN v_rows < v_batch;
    END LOOP;

    -- The run counts (migration 0027): each process's rows of the minutes that have closed merge into one row per
    -- minute and status, and minutes wholly past the horizon go once no stored run is that old: a partition past
    -- the horizon waits for its last run to pass it, and a longer retention set meanwhile shows its runs again,
    -- counted. A row a finish holds (counting a run into a closed minute, at a p_now of its own) waits for the
    -- next call.
    WITH merged AS (
        DELETE FROM tock.run_counts c
        WHERE c.ctid = ANY (ARRAY(SELECT k.ctid FROM tock.run_counts k
                                  WHERE k.backend <> 0 AND k.minute < tock.minute_of(v_now) - interval '1 minute'
                                  FOR UPDATE SKIP LOCKED))
        RETURNING c.minute, c.status, c.runs
    )
    INSERT INTO tock.run_counts AS c (minute, status, backend, runs)
    SELECT m.minute, m.status, 0, sum(m.runs) FROM merged m GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (minute, status, backend) DO UPDATE SET runs = c.runs + excluded.runs;
    DELETE FROM tock.run_counts c
    WHERE c.ctid = ANY (ARRAY(SELECT k.ctid FROM tock.run_counts k
                              WHERE k.minute < least(tock.minute_of(v_horizon),
                                                     (SELECT tock.minute_of(min(r.finished_at)) FROM tock.finished_runs r))
                              FOR UPDATE SKIP LOCKED));

    -- Live output whose run has ended (one a finish did not see, tock.end_runs) or vanished.
    DELETE FROM tock.run_output o WHERE NOT EXISTS (SELECT 1 FROM tock.runs r WHERE r.id = o.run_id);

    DELETE FROM tock.workers w
    WHERE w.state IN ('stopped', 'lost') AND w.stopped_at < v_horizon
      AND NOT EXISTS (SELECT 1 FROM tock.run_leases l WHERE l.worker_id = w.id);
    -- The audit log keeps its own, longer retention: in batches until none is left, up to 100 a call, so that a
    -- busy API's run-now entries are kept up with.
    FOR v_round IN 1..100 LOOP
        EXIT WHEN tock.purge_audit(v_now, v_batch) < v_batch;
    END LOOP;
    RETURN least(v_count, 2147483647)::int;
END $$;
COMMENT ON FUNCTION tock.purge_history(timestamptz, int) IS
    'History maintenance: creates partitions ahead, drops those past the retention; returns how many runs and deliveries it removed.';

-- The figures only the database knows, as Prometheus gauges: GET /metrics sets them at each scrape, and psql users
-- can read them too. One row per gauge (and label set).
-- The queue is read once: tock.lag, materialized, gives the per-priority gauges (its pools summed) and (totalled
-- as tock.queue_depth totals it) the queue's. Read through the views, each gauge would scan the pending runs again,
-- at every scrape of every process that serves /metrics.
CREATE OR REPLACE FUNCTION tock.gauges(p_now timestamptz DEFAULT now())
RETURNS TABLE (name text, help text, labels jsonb, value float8)
LANGUAGE sql STABLE SET jit = off AS $$
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
                               ('running', (SELECT count(*) FROM tock.run_leases)::float8)) s(state, n)
    UNION ALL
    SELECT 'tock_queue_waiting_runs', 'Pending runs per priority.', jsonb_build_object('priority', l.priority::text),
           sum(l.waiting)::float8
    FROM lag l GROUP BY l.priority
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
           (SELECT count(*) FROM tock.finished_runs r
            WHERE r.status = 'dead' AND r.finished_at >= p_now - (SELECT c.history_retention FROM tock.config c))
    UNION ALL
    -- Per pool (tock.pool_overview): a pool's runs wait for its own workers and limits, whatever the others do.
    SELECT g.name, g.help, jsonb_build_object('pool', p.pool), g.value
    FROM tock.pool_overview p
    CROSS JOIN LATERAL (VALUES
        ('tock_pool_ready_runs', 'Runs of the pool ready to start now.', p.ready::float8),
        ('tock_pool_running_runs', 'Runs of the pool running.', p.running::float8),
        ('tock_pool_oldest_ready_age_seconds', 'How long the pool''s oldest ready run has waited.', p.oldest_ready_age_seconds),
        ('tock_pool_workers_alive', 'Live workers serving the pool.', p.workers_alive::float8),
        ('tock_pool_max_running', 'The pool''s limit on runs at once (absent: none).', p.max_running::float8)) g(name, help, value)
    WHERE g.value IS NOT NULL
    UNION ALL
    SELECT 'tock_jobs', 'Jobs, by state.', jsonb_build_object('state', s.state), s.n
    FROM (SELECT count(*) FILTER (WHERE j.enabled)::float8 AS enabled, count(*) FILTER (WHERE NOT j.enabled)::float8 AS paused
          FROM tock.jobs j) c
    CROSS JOIN LATERAL (VALUES ('enabled', c.enabled), ('paused', c.paused)) s(state, n)
$$;
COMMENT ON FUNCTION tock.gauges(timestamptz) IS 'Queue, workers, schedulers, stuck and dead runs as Prometheus gauges (name, help, labels, value).';
