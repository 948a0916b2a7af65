-- Runs and workers: every state change is one guarded statement in one function, so a late or duplicate
-- call is harmless. Time-dependent functions take p_now so tests move the clock instead of sleeping.

-- A runnable run wakes idle workers. Empty payloads collapse within a transaction: one wake per batch.
CREATE OR REPLACE FUNCTION tock.tg_runs__notify_workers()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tock_runs', '');
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER runs_notify_inserted
    AFTER INSERT ON tock.runs
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION tock.tg_runs__notify_workers();

CREATE OR REPLACE TRIGGER runs_notify_requeued
    AFTER UPDATE OF status ON tock.runs
    FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status <> 'pending')
    EXECUTE FUNCTION tock.tg_runs__notify_workers();

-- Enqueues a run of a job now, whatever its schedule or pause state; returns the run's id.
-- p_trigger records who asked: 'sql' (default), 'manual' (the CLI) or 'api'.
CREATE OR REPLACE FUNCTION tock.run_now(p_job text, p_trigger text DEFAULT 'sql', p_now timestamptz DEFAULT now())
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_job constant bigint := tock.find_job(p_job);
    v_run bigint;
BEGIN
    IF p_trigger NOT IN ('sql', 'manual', 'api') THEN
        PERFORM tock.raise_invalid('trigger', format('%L is not sql, manual or api', p_trigger));
    END IF;
    INSERT INTO tock.runs (job_id, trigger, priority, enqueued_at, run_after)
    SELECT id, p_trigger, priority, p_now, p_now FROM tock.jobs WHERE id = v_job
    RETURNING id INTO v_run;
    RETURN v_run;
END $$;
COMMENT ON FUNCTION tock.run_now(text, text, timestamptz) IS
    'Enqueues a run of a job (by name or id) at once and returns the run id; an idle worker starts it within milliseconds.';

-- Turns due jobs into pending runs and advances next_run_at, all in one statement. Due jobs are locked with
-- SKIP LOCKED, so any number of schedulers may call it at once: each fire time yields exactly one run (and the
-- unique index runs_one_per_fire_time backs that up). A job that missed several fire times (downtime) runs
-- once and moves to its next fire time after p_now: never a burst. Overlap 'skip' drops a fire time while the
-- job has a pending or running run. Returns when to call again: the earliest next_run_at, or p_now when more
-- than p_limit jobs were due.
CREATE OR REPLACE FUNCTION tock.tick(p_now timestamptz DEFAULT now(), p_limit int DEFAULT 1000)
RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    v_due int;
BEGIN
    WITH due AS (
        SELECT j.id, j.next_run_at AS fire_time, j.priority, j.overlap
        FROM tock.jobs j
        WHERE j.enabled AND j.next_run_at <= p_now
        ORDER BY j.next_run_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), advanced AS (
        UPDATE tock.jobs j
        SET next_run_at = tock.next_fire_time(j.spec, j.timezone, greatest(p_now, due.fire_time), j.anchor_at)
        FROM due
        WHERE j.id = due.id
        RETURNING due.*
    ), enqueued AS (
        INSERT INTO tock.runs (job_id, trigger, priority, scheduled_for, enqueued_at, run_after)
        SELECT a.id, 'schedule', a.priority, a.fire_time, p_now, a.fire_time
        FROM advanced a
        WHERE a.overlap <> 'skip'
           OR NOT EXISTS (SELECT 1 FROM tock.runs r WHERE r.job_id = a.id AND r.status IN ('pending', 'running'))
        ON CONFLICT (job_id, scheduled_for) WHERE trigger = 'schedule' DO NOTHING
    )
    SELECT count(*) INTO v_due FROM advanced;
    IF v_due >= p_limit THEN
        RETURN p_now;
    END IF;
    RETURN (SELECT min(next_run_at) FROM tock.jobs WHERE enabled AND next_run_at IS NOT NULL);
END $$;
COMMENT ON FUNCTION tock.tick(timestamptz, int) IS
    'Enqueues one run per due fire time and advances the schedules; returns when the next job is due. Safe to call concurrently.';

-- A worker process announces itself; returns its id.
CREATE OR REPLACE FUNCTION tock.register_worker(
    p_host text, p_pid int, p_concurrency int, p_scripts_dir text DEFAULT NULL, p_version text DEFAULT NULL,
    p_now timestamptz DEFAULT now())
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF p_concurrency IS NULL OR p_concurrency NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('concurrency', format('%s is out of range 1-1000', p_concurrency));
    END IF;
    INSERT INTO tock.workers (name, host, pid, concurrency, scripts_dir, version, started_at, last_heartbeat_at)
    VALUES (p_host || ':' || p_pid, p_host, p_pid, p_concurrency, p_scripts_dir, p_version, p_now, p_now)
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- A live worker's heartbeat; returns its state ('running', 'stopping'), or NULL when it is no longer
-- registered as alive (stopped, or marked lost): such a worker must stop.
CREATE OR REPLACE FUNCTION tock.heartbeat(p_worker bigint, p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE sql AS $$
    UPDATE tock.workers SET last_heartbeat_at = p_now
    WHERE id = p_worker AND state IN ('running', 'stopping')
    RETURNING state
$$;

-- A worker that stops claiming (graceful shutdown begins), then one that has stopped.
CREATE OR REPLACE FUNCTION tock.set_worker_state(p_worker bigint, p_state text, p_now timestamptz DEFAULT now())
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_state NOT IN ('stopping', 'stopped') THEN
        PERFORM tock.raise_invalid('state', format('%L is not stopping or stopped', p_state));
    END IF;
    UPDATE tock.workers
    SET state = p_state, stopped_at = CASE WHEN p_state = 'stopped' THEN p_now END, last_heartbeat_at = p_now
    WHERE id = p_worker AND state IN ('running', 'stopping');
    RETURN FOUND;
END $$;

-- Claims up to p_max runnable runs for a live worker: highest priority first, then oldest; SKIP LOCKED, so
-- concurrent claimers never wait on or take each other's runs. Returns what the worker needs to run them.
CREATE OR REPLACE FUNCTION tock.claim_runs(p_worker bigint, p_max int, p_now timestamptz DEFAULT now())
RETURNS TABLE (
    run_id bigint, job_id bigint, job_name text, script text, args text[], timeout_seconds float8,
    attempt int, trigger text, scheduled_for timestamptz)
LANGUAGE sql AS $$
    WITH claimable AS (
        SELECT r.id
        FROM tock.runs r
        WHERE r.status = 'pending' AND r.run_after <= p_now
          AND EXISTS (SELECT 1 FROM tock.workers w WHERE w.id = p_worker AND w.state = 'running')
        ORDER BY r.priority DESC, r.run_after, r.id
        LIMIT p_max
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE tock.runs r
        SET status = 'running', started_at = p_now, worker_id = p_worker
        FROM claimable c
        WHERE r.id = c.id
        RETURNING r.id, r.job_id, r.attempt, r.trigger, r.scheduled_for, r.priority, r.run_after
    )
    SELECT c.id, j.id, j.name, j.script, j.args, extract(epoch FROM j.timeout)::float8, c.attempt, c.trigger,
           c.scheduled_for
    FROM claimed c JOIN tock.jobs j ON j.id = c.job_id
    ORDER BY c.priority DESC, c.run_after, c.id
$$;
COMMENT ON FUNCTION tock.claim_runs(bigint, int, timestamptz) IS
    'Moves up to p_max pending runs to running for worker p_worker (FOR UPDATE SKIP LOCKED) and returns them.';

-- Records how a run ended, with its output. Only the worker that holds a running run can finish it, once:
-- returns false (and changes nothing) for a run that is not running on p_worker any more.
CREATE OR REPLACE FUNCTION tock.finish_run(
    p_run bigint, p_worker bigint, p_status text, p_exit_code int DEFAULT NULL, p_error text DEFAULT NULL,
    p_output text DEFAULT '', p_bytes_total bigint DEFAULT 0, p_truncated boolean DEFAULT false,
    p_now timestamptz DEFAULT now())
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled') THEN
        PERFORM tock.raise_invalid('status', format('%L is not succeeded, failed, timed_out or cancelled', p_status));
    END IF;
    UPDATE tock.runs
    SET status = p_status, finished_at = greatest(p_now, started_at), exit_code = p_exit_code, error = p_error
    WHERE id = p_run AND status = 'running' AND worker_id = p_worker;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO tock.run_output (run_id, output, bytes_total, truncated, updated_at)
    VALUES (p_run, coalesce(p_output, ''), coalesce(p_bytes_total, 0), coalesce(p_truncated, false), p_now)
    ON CONFLICT (run_id) DO UPDATE
    SET output = EXCLUDED.output, bytes_total = EXCLUDED.bytes_total, truncated = EXCLUDED.truncated,
        updated_at = EXCLUDED.updated_at;
    UPDATE tock.workers SET runs_processed = runs_processed + 1 WHERE id = p_worker;
    RETURN true;
END $$;
COMMENT ON FUNCTION tock.finish_run(bigint, bigint, text, int, text, text, bigint, boolean, timestamptz) IS
    'Ends a running run as succeeded, failed, timed_out or cancelled, with its output; false if it was not running on that worker.';

-- Hands a running run back to the queue without using up an attempt (its worker is shutting down and had to
-- stop the script). Only the worker holding the run can release it; returns false otherwise.
CREATE OR REPLACE FUNCTION tock.release_run(p_run bigint, p_worker bigint, p_now timestamptz DEFAULT now())
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tock.runs
    SET status = 'pending', started_at = NULL, worker_id = NULL, run_after = p_now
    WHERE id = p_run AND status = 'running' AND worker_id = p_worker;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION tock.release_run(bigint, bigint, timestamptz) IS
    'Puts a running run back to pending (same attempt): a worker that shuts down hands back what it could not finish.';
