-- Runs and workers: every state change is one guarded statement in one function, so a late or duplicate
-- call is harmless. Time-dependent functions take p_now so tests move the clock instead of sleeping.
--
-- The functions workers and schedulers call in their loops (tick, claim_runs, finish_runs, rescue,
-- next_delayed_run) are never JIT-compiled (SET jit = off). PostgreSQL compiles any plan whose estimated cost
-- passes jit_above_cost, and a long queue's estimates do: compiling would then cost each call many times the work
-- it does. Compilation pays off for queries that run for seconds, never for these.

-- The advisory lock keys: (key, worker id) is held by a live worker's session (see tock.rescue); (key + 1,
-- job id) serializes claims of an overlap 'queue' job; key + 2 is the schedulers' (tock.scheduler_lock_key); key + 3
-- lets one maintenance pass run at a time (tock.purge_history, tock.set_history_retention).
-- PostgreSQL releases the first the moment a worker dies, which tells tock.rescue() in seconds what a heartbeat
-- tells only later.
CREATE OR REPLACE FUNCTION tock.worker_lock_key() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 1953459051 $$;
COMMENT ON FUNCTION tock.worker_lock_key() IS
    'The advisory lock key space Tock''s locks are taken in (workers'' sessions; offsets for the scheduler and the claims).';

-- Whether the login calling (session_user, not the SECURITY DEFINER owner a function runs as) owns the schema or is
-- a superuser: it can write the tables directly, so it may also act as any worker and move the clock (tests do).
CREATE OR REPLACE FUNCTION tock.caller_owns_schema()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT pg_has_role(session_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'tock'), 'USAGE')
$$;

-- p_now as a caller gave it, if it is within 10 seconds of the database's clock (as of the statement: the default
-- now() of a transaction held open for long is refused too). Only the schema's owner may move the clock further:
-- a tock_worker member passing now() + 2 hours claimed runs that were not due, and a tock_admin member enqueuing a
-- run at '-infinity' made every view that subtracts times fail.
CREATE OR REPLACE FUNCTION tock.checked_now(p_now timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_now IS NULL OR NOT isfinite(p_now) THEN
        PERFORM tock.raise_invalid('p_now', format('%s is not a time (leave it out for the database''s clock)',
                                                   coalesce(p_now::text, 'NULL')));
    END IF;
    IF p_now BETWEEN statement_timestamp() - interval '10 seconds' AND statement_timestamp() + interval '10 seconds'
       OR tock.caller_owns_schema() THEN
        RETURN p_now;
    END IF;
    RAISE EXCEPTION 'p_now: % is more than 10 seconds from the database''s clock (%)', p_now, statement_timestamp()
        USING ERRCODE = 'insufficient_privilege', COLUMN = 'p_now',
              HINT = 'Leave p_now out; only the owner of schema tock may move the clock (tests).';
END $$;

-- Refuses a call that acts as worker p_worker without its lease token (the secret it registered with, see
-- tock.register_worker). The schema's owner may leave the token out (tests; it can write the tables anyway).
CREATE OR REPLACE FUNCTION tock.check_worker_lease(p_worker bigint, p_token text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_token IS NULL THEN
        IF tock.caller_owns_schema() THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'worker %: no lease token; a worker proves who it is with the token it registered with', p_worker
            USING ERRCODE = 'insufficient_privilege', HINT = 'Pass p_lease_token => the token given to tock.register_worker.';
    END IF;
    PERFORM 1 FROM tock.workers WHERE id = p_worker AND lease_token_hash = sha256(convert_to(p_token, 'UTF8'));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker %: the lease token does not match; only the worker itself may act as it', p_worker
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- New pending runs wake idle workers (NOTIFY tock_runs). Once per INSERT statement, not per row: a tick that
-- enqueues many runs would call a row trigger once per run, for NOTIFYs that collapse into one anyway.
-- It also does what the foreign key from runs to jobs did (see migration 0010): each job the new runs name must
-- exist, and is locked FOR SHARE, so that a deletion of it waits for this transaction (and then deletes its
-- runs, tock.tg_jobs__deleted) or has already happened (and this insert fails). Once per job, not per run.
-- FOR SHARE, not FOR KEY SHARE: a move of the job to another pool waits for this transaction too (and then moves
-- its runs, tock.tg_jobs__pool_moved) or has committed, and the pool check below, a statement of its own, sees it.
-- With FOR KEY SHARE a run-now racing a move stayed in the old pool.
CREATE OR REPLACE FUNCTION tock.tg_runs__inserted()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_job bigint;
BEGIN
    FOR v_job IN SELECT DISTINCT job_id FROM inserted LOOP
        PERFORM 1 FROM tock.jobs WHERE id = v_job FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'job % does not exist', coalesce(v_job::text, 'NULL')
                USING ERRCODE = 'foreign_key_violation',
                      HINT = 'A run belongs to a job in tock.jobs: enqueue one with tock.run_now(job).';
        END IF;
    END LOOP;
    -- A run is in its job's pool. Tock's own inserts say so; an INSERT that leaves the pool out is put right. One
    -- look at the inserted rows (a probe of the job each), and the update by id only when one is wrong.
    IF EXISTS (SELECT 1 FROM inserted i WHERE i.pool <> (SELECT j.pool FROM tock.jobs j WHERE j.id = i.job_id)) THEN
        UPDATE tock.runs r SET pool = (SELECT j.pool FROM tock.jobs j WHERE j.id = r.job_id)
        WHERE r.id = ANY (ARRAY(SELECT i.id FROM inserted i
                                WHERE i.pool <> (SELECT j.pool FROM tock.jobs j WHERE j.id = i.job_id)));
    END IF;
    IF EXISTS (SELECT 1 FROM inserted WHERE status = 'pending') THEN
        PERFORM pg_notify('tock_runs', '');
    END IF;
    RETURN NULL;
END $$;

-- Dropped first: it used to be a row trigger, which CREATE OR REPLACE TRIGGER does not turn into a statement one.
DROP TRIGGER IF EXISTS runs_notify_inserted ON tock.runs;
CREATE TRIGGER runs_notify_inserted
    AFTER INSERT ON tock.runs REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_runs__inserted();

-- A run stays with its job (the foreign key kept that too). Only a statement that sets job_id pays for the check.
-- AFTER, not BEFORE: a BEFORE row trigger on UPDATE makes PostgreSQL lock each row it updates first, whatever the
-- trigger's columns, which cost every finish one more WAL record per run (pg_walinspect).
CREATE OR REPLACE FUNCTION tock.tg_runs__job_is_fixed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'run % belongs to job %; it cannot move to job %', OLD.id, OLD.job_id, NEW.job_id
        USING ERRCODE = 'foreign_key_violation', HINT = 'Enqueue a run of the other job with tock.run_now(job).';
END $$;
DROP TRIGGER IF EXISTS runs_job_is_fixed ON tock.runs;
CREATE TRIGGER runs_job_is_fixed
    AFTER UPDATE OF job_id ON tock.runs
    FOR EACH ROW WHEN (NEW.job_id IS DISTINCT FROM OLD.job_id)
    EXECUTE FUNCTION tock.tg_runs__job_is_fixed();

-- A run put back in the queue (release, an unheld claim) wakes idle workers too (tock.tg_notify is in 20_jobs.sql).
CREATE OR REPLACE TRIGGER runs_notify_requeued
    AFTER UPDATE OF status ON tock.runs
    FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status <> 'pending')
    EXECUTE FUNCTION tock.tg_notify('tock_runs');

-- A run of an overlap 'queue' job that ended makes the job's next pending run claimable: that wakes the workers
-- too, so none has to claim after each run it finishes just in case. A run that ends leaves tock.runs (its row moves
-- to tock.finished_runs), so this watches deletions. One query per statement, not per row.
CREATE OR REPLACE FUNCTION tock.tg_runs__queue_unblocked()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A probe of each job with ended runs, never a join: with many 'queue' jobs a join would hash them all. Once
    -- per job, not per run: a finish of a batch of one job's runs probes that job once.
    -- A run of a job or pool at its max_running that ended makes room the same way.
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT g.job_id FROM gone g) e
               WHERE (SELECT j.overlap = 'queue' OR j.max_running IS NOT NULL FROM tock.jobs j WHERE j.id = e.job_id))
       OR EXISTS (SELECT 1 FROM (SELECT DISTINCT g.pool FROM gone g WHERE g.status = 'running') e
                  WHERE EXISTS (SELECT 1 FROM tock.pools l WHERE l.name = e.pool AND l.max_running IS NOT NULL)) THEN
        PERFORM pg_notify('tock_runs', '');
    END IF;
    RETURN NULL;
END $$;

-- It watched updates before runs left the table when they ended (migration 0012): a claim no longer pays for it.
DROP TRIGGER IF EXISTS runs_notify_queue_unblocked ON tock.runs;
CREATE TRIGGER runs_notify_queue_unblocked
    AFTER DELETE ON tock.runs REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_runs__queue_unblocked();

-- What the bridges of migrations 0012 and 0018 (bridges/) left for the release before until these functions came.
DROP TRIGGER IF EXISTS runs_refused_while_upgrading ON tock.runs;
DROP FUNCTION IF EXISTS tock.tg_runs__refused_while_upgrading();
DROP FUNCTION IF EXISTS tock.refuse_while_upgrading(text);
DROP TRIGGER IF EXISTS run_leases_completed_while_upgrading ON tock.run_leases;
DROP FUNCTION IF EXISTS tock.tg_run_leases__completed_while_upgrading();

-- Ends runs in flight: each leaves tock.runs (with its lease and live output) and enters tock.finished_runs with how
-- it ended and its output, in the caller's transaction. The only way a run ends, so the two tables never hold the
-- same run. Only runs still p_from (pending or running) and, when p_worker is given, running on that worker: the
-- guard is checked again on the row a concurrent claim, requeue or rescue left, so a late or duplicate call ends
-- nothing. An output element empty with 0 bytes keeps what the worker sent while the run ran, if anything.
-- p_retried_by: for a run whose failure enqueued its next attempt, that attempt (finished_runs.retried_by).
-- Returns the runs it moved.
DROP FUNCTION IF EXISTS tock.end_runs(text, bigint, bigint[], text[], int[], text[], text[], bigint[], boolean[], timestamptz);
CREATE OR REPLACE FUNCTION tock.end_runs(
    p_from text, p_worker bigint, p_runs bigint[], p_statuses text[], p_exit_codes int[], p_errors text[],
    p_outputs text[], p_bytes_total bigint[], p_truncated boolean[], p_now timestamptz, p_retried_by bigint[] DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    v_ended bigint[];
BEGIN
    -- Each run's end is found by its position in p_runs (array_position: a scan of at most 1,000 ids in C), never by
    -- a join: joined to the ends, the deleted rows are rescanned per end (the planner takes an unnest of parameters
    -- for 10 rows), and driven by the ends, tock.runs is scanned whole whenever its statistics say no run is
    -- running (a drained queue's), quadratic in the batch. The delete finds its rows by the primary key, whatever
    -- the statistics. A run repeated in p_runs takes its first end.
    WITH gone AS (
        DELETE FROM tock.runs r
        WHERE r.id = ANY (p_runs) AND r.status = p_from AND (p_worker IS NULL OR r.worker_id = p_worker)
        RETURNING r.*, pg_catalog.array_position(p_runs, r.id) AS end_at
    ), leases AS (
        -- Both keys of the leases' index as arrays: one probe per run (see tock.heartbeat).
        DELETE FROM tock.run_leases l
        WHERE l.worker_id = ANY (ARRAY(SELECT DISTINCT g.worker_id FROM gone g WHERE g.worker_id IS NOT NULL))
          AND l.run_id = ANY (ARRAY(SELECT g.id FROM gone g WHERE g.worker_id IS NOT NULL))
    ), moved AS (
        INSERT INTO tock.finished_runs (id, job_id, trigger, status, priority, attempt, first_run_id, scheduled_for,
                                        enqueued_at, run_after, started_at, finished_at, worker_id, exit_code, error,
                                        cancel_requested_at, timeout_at, output, output_bytes, output_truncated, pool,
                                        params, upstream, retried_by)
        SELECT g.id, g.job_id, g.trigger, e.status, g.priority, g.attempt, g.first_run_id, g.scheduled_for,
               g.enqueued_at, g.run_after, g.started_at, greatest(p_now, g.started_at), g.worker_id, e.exit_code,
               e.error, g.cancel_requested_at, g.timeout_at,
               CASE WHEN coalesce(e.bytes, 0) > 0 OR coalesce(e.output, '') <> '' THEN right(e.output, 4194304)
                    ELSE l.output END,
               CASE WHEN coalesce(e.bytes, 0) > 0 OR coalesce(e.output, '') <> '' THEN greatest(coalesce(e.bytes, 0), 0)
                    ELSE coalesce(l.bytes_total, 0) END,
               CASE WHEN coalesce(e.bytes, 0) > 0 OR coalesce(e.output, '') <> ''
                    THEN coalesce(e.truncated, false) OR length(e.output) > 4194304
                    ELSE coalesce(l.truncated, false) END,
               g.pool, g.params, g.upstream, e.retried_by
        FROM gone g
        CROSS JOIN LATERAL (SELECT p_statuses[g.end_at] AS status, p_exit_codes[g.end_at] AS exit_code,
                                   p_errors[g.end_at] AS error, p_outputs[g.end_at] AS output,
                                   p_bytes_total[g.end_at] AS bytes, p_truncated[g.end_at] AS truncated,
                                   p_retried_by[g.end_at] AS retried_by) e
        -- The output sent while it ran, for a run whose end brings none (a cancel of a pending run, a rescue): one
        -- probe of its primary key per run.
        LEFT JOIN tock.run_output l ON l.run_id = g.id
        RETURNING id
    )
    SELECT coalesce(array_agg(id), '{}') INTO v_ended FROM moved;
    -- A statement of its own, so its snapshot is taken after the DELETE above waited for the run's row: an output
    -- report that held that row (FOR SHARE, tock.report_output) and committed meanwhile is seen and goes too. In the
    -- statement above it was not, and stayed beside the finished run's output.
    DELETE FROM tock.run_output o WHERE o.run_id = ANY (v_ended);
    -- Their webhooks, in this transaction: a run never ends without them (migration 0021).
    IF cardinality(v_ended) > 0 AND EXISTS (SELECT 1 FROM tock.hooks) THEN
        PERFORM tock.enqueue_hooks(v_ended, p_now);
    END IF;
    RETURN v_ended;
END $$;

-- How long a run-now key answers the run it started (tock.run_now_keyed; tock.purge_history forgets it after).
CREATE OR REPLACE FUNCTION tock.trigger_key_lifetime() RETURNS interval LANGUAGE sql IMMUTABLE AS $$ SELECT interval '24 hours' $$;

-- Enqueues a run of a job now, whatever its schedule or pause state; returns the run's id, whether p_key had
-- already started it (replayed), and the run's status now ('purged' when the history no longer holds it).
-- p_trigger records who asked: 'sql' (default), 'manual' (the CLI) or 'api'.
-- p_key (1-200 characters, no control characters): the same key for the same job within tock.trigger_key_lifetime()
-- of its first use answers that first run and enqueues nothing (migration 0015). Two callers racing with one key:
-- the second's insert of the key waits for the first to commit, then finds it. Keys are the job's, whoever calls:
-- use one that names the caller's attempt (a UUID).
-- p_params: the values of the job's parameters, a JSON object ({"env": "prod"}), checked by tock.resolved_params:
-- one the job does not declare, or does not allow, is refused naming it, and nothing is enqueued. A replayed key
-- answers its first run whatever the values.
DROP FUNCTION IF EXISTS tock.run_now(text, text, timestamptz);
DROP FUNCTION IF EXISTS tock.run_now_keyed(text, text, text, timestamptz);
DROP FUNCTION IF EXISTS tock.run_now(text, text, timestamptz, text);
DROP FUNCTION IF EXISTS tock.run_now_keyed(text, text, timestamptz, text);
CREATE OR REPLACE FUNCTION tock.run_now_keyed(
    p_job text, p_trigger text DEFAULT 'sql', p_now timestamptz DEFAULT now(), p_key text DEFAULT NULL,
    p_params jsonb DEFAULT NULL)
RETURNS TABLE (run_id bigint, replayed boolean, status text) LANGUAGE plpgsql AS $$
DECLARE
    v_job constant bigint := tock.find_job(p_job);
    v_run bigint;
    v_params jsonb;
BEGIN
    p_now := tock.checked_now(p_now);
    v_params := tock.resolved_params((SELECT j.params FROM tock.jobs j WHERE j.id = v_job), p_params);
    IF p_trigger IS NULL OR p_trigger NOT IN ('sql', 'manual', 'api') THEN
        PERFORM tock.raise_invalid('trigger', format('%L is not sql, manual or api', p_trigger));
    END IF;
    IF p_key IS NOT NULL THEN
        -- C0 and C1 controls and DEL by code point, whatever the database's locale says [[:cntrl:]] is.
        IF length(p_key) NOT BETWEEN 1 AND 200 OR p_key ~ '[\u0001-\u001f\u007f-\u009f]' THEN
            PERFORM tock.raise_invalid('key', format('a key has 1 to 200 characters and no control characters; this one has %s',
                                                     length(p_key)));
        END IF;
        -- Ours when new, or when its first use is a lifetime old; else the run it started.
        INSERT INTO tock.trigger_keys AS k (job_id, key, created_at) VALUES (v_job, p_key, p_now)
        ON CONFLICT (job_id, key) DO UPDATE SET created_at = excluded.created_at, run_id = NULL
            WHERE k.created_at <= excluded.created_at - tock.trigger_key_lifetime();
        IF NOT FOUND THEN
            SELECT k.run_id INTO v_run FROM tock.trigger_keys k WHERE k.job_id = v_job AND k.key = p_key;
            RETURN QUERY SELECT v_run, true,
                coalesce((SELECT r.status FROM tock.runs r WHERE r.id = v_run),
                         (SELECT f.status FROM tock.finished_runs f WHERE f.id = v_run), 'purged');
            RETURN;
        END IF;
    END IF;
    INSERT INTO tock.runs (job_id, trigger, priority, enqueued_at, run_after, pool, params)
    SELECT id, p_trigger, priority, p_now, p_now, pool, v_params FROM tock.jobs WHERE id = v_job
    RETURNING id INTO v_run;
    IF p_key IS NOT NULL THEN
        UPDATE tock.trigger_keys k SET run_id = v_run WHERE k.job_id = v_job AND k.key = p_key;
    END IF;
    PERFORM tock.audit_run('run.trigger', v_run, NULL,
                           jsonb_strip_nulls(jsonb_build_object('trigger', p_trigger, 'params', v_params, 'key', p_key)), v_job);
    RETURN QUERY SELECT v_run, false, 'pending'::text;
END $$;
COMMENT ON FUNCTION tock.run_now_keyed(text, text, timestamptz, text, jsonb) IS
    'tock.run_now, answering whether p_key had already started the run within 24 hours (replayed) and its status now.';

CREATE OR REPLACE FUNCTION tock.run_now(
    p_job text, p_trigger text DEFAULT 'sql', p_now timestamptz DEFAULT now(), p_key text DEFAULT NULL,
    p_params jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN (SELECT k.run_id FROM tock.run_now_keyed(p_job, p_trigger, p_now, p_key, p_params) k);
END $$;
COMMENT ON FUNCTION tock.run_now(text, text, timestamptz, text, jsonb) IS
    'Enqueues a run of a job (by name or id) at once and returns the run id; an idle worker starts it within milliseconds. With p_key, the same key for the job within 24 hours returns the first run''s id and enqueues nothing; p_params gives its parameters'' values ({"env": "prod"}).';

-- Turns due jobs into pending runs and advances next_run_at, all in one statement. Due jobs are locked with
-- SKIP LOCKED, so any number of schedulers may call it at once: each fire time yields exactly one run (and the
-- unique index runs_one_per_fire_time backs that up). A job that missed several fire times (downtime) runs
-- once (misfire 'run_once') or not at all ('skip'), and moves to its next fire time after p_now: never a burst.
-- Overlap 'skip' drops a fire time while the job has a pending or running run.
--
-- p_lookahead enqueues fire times up to that far ahead, as runs held back until their fire time (run_after):
-- the cost of the tick is paid before the fire time, and at the fire time the workers only claim, so many jobs
-- due at the same second all start close to it. A job with overlap 'skip' that still has a
-- pending or running run is not enqueued early: its skip is decided at the fire time itself.
-- Returns when to call again: the earliest fire time less p_lookahead, the fire time itself for a job left
-- waiting in the window, or p_now when more than p_limit jobs were due.
--
-- No sequential scans: each due job's overlap probe (NOT EXISTS … runs of the job in flight) must be one look
-- into runs_job_idx. With statistics taken during a backlog of one job, the planner believes every run is
-- that job's pending run, expects the first row at once and scans the table instead, once per due job: with a
-- real history that is a scan of millions of rows per job. Every statement here has an index that answers it.
DROP FUNCTION IF EXISTS tock.tick(timestamptz, int);
CREATE OR REPLACE FUNCTION tock.tick(p_now timestamptz DEFAULT now(), p_limit int DEFAULT 1000,
                                     p_lookahead interval DEFAULT interval '0')
RETURNS timestamptz LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_due int;
    v_horizon timestamptz;
BEGIN
    p_now := tock.checked_now(p_now);
    IF p_lookahead > interval '1 day' THEN
        PERFORM tock.raise_invalid('p_lookahead', format('%s is more than a day', p_lookahead));
    END IF;
    v_horizon := p_now + greatest(p_lookahead, interval '0');
    WITH due AS (
        SELECT j.id, j.next_run_at AS fire_time, j.priority, j.overlap, j.misfire, j.pool, j.params
        FROM tock.jobs j
        WHERE j.enabled AND j.next_run_at <= v_horizon
          AND (j.next_run_at <= p_now OR j.overlap <> 'skip'
               OR NOT EXISTS (SELECT 1 FROM tock.runs r WHERE r.job_id = j.id))
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
        -- A scheduled run takes the parameters' defaults (a job that runs on a schedule has one for each that is
        -- required: tock.tg_jobs__prepare).
        INSERT INTO tock.runs (job_id, trigger, priority, scheduled_for, enqueued_at, run_after, pool, params)
        SELECT a.id, 'schedule', a.priority, a.fire_time, p_now, a.fire_time, a.pool,
               CASE WHEN a.params IS NOT NULL THEN tock.resolved_params(a.params, NULL) END
        FROM advanced a
        WHERE (a.overlap <> 'skip'
               OR NOT EXISTS (SELECT 1 FROM tock.runs r WHERE r.job_id = a.id))
          -- misfire 'skip': a fire time missed by more than a minute (downtime) is dropped, not run late.
          AND (a.misfire = 'run_once' OR a.fire_time >= p_now - interval '1 minute')
        ON CONFLICT (job_id, scheduled_for) WHERE trigger = 'schedule' DO NOTHING
    )
    SELECT count(*) INTO v_due FROM advanced;
    IF v_due >= p_limit THEN
        RETURN p_now;
    END IF;
    RETURN least(
        (SELECT min(next_run_at) FROM tock.jobs WHERE enabled AND next_run_at <= v_horizon),
        (SELECT min(next_run_at) FROM tock.jobs WHERE enabled AND next_run_at > v_horizon) - (v_horizon - p_now));
END $$;
COMMENT ON FUNCTION tock.tick(timestamptz, int, interval) IS
    'Enqueues one run per due fire time (up to p_lookahead early, held until it) and advances the schedules; returns when to call again. Safe to call concurrently.';

-- A worker process announces itself; returns its id. p_lease_token is a secret the worker chose (32 to 200
-- characters): only its SHA-256 is kept, and every later call acting as this worker must present it
-- (tock.check_worker_lease). Only the schema's owner may register without one.
-- p_name: a name that stays the same across the worker's restarts (`tock worker --name`); host:pid without one.
-- A chosen name is a job name's shape (a letter, then letters, digits, '.', '_', '-'; no ':', so never a host:pid)
-- and belongs to one live worker (workers_live_name_idx, migration 0016). When a live worker holds it, rescue
-- judges the holder first: a worker restarted after a crash finds its predecessor lost once its session lock is
-- gone (2 s), and takes its name.
DROP FUNCTION IF EXISTS tock.register_worker(text, int, int, text, text, timestamptz);
DROP FUNCTION IF EXISTS tock.register_worker(text, int, int, text, text, timestamptz, text);
DROP FUNCTION IF EXISTS tock.register_worker(text, int, int, text, text, timestamptz, text, text);
CREATE OR REPLACE FUNCTION tock.register_worker(
    p_host text, p_pid int, p_concurrency int, p_scripts_dir text DEFAULT NULL, p_version text DEFAULT NULL,
    p_now timestamptz DEFAULT now(), p_lease_token text DEFAULT NULL, p_name text DEFAULT NULL,
    p_pools text[] DEFAULT '{default}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_now constant timestamptz := tock.checked_now(p_now);
    v_holder bigint;
BEGIN
    IF p_pools IS NULL OR cardinality(p_pools) NOT BETWEEN 1 AND 32
       OR EXISTS (SELECT 1 FROM unnest(p_pools) p WHERE p IS NULL OR NOT tock.is_pool_name(p))
       OR cardinality(p_pools) <> (SELECT count(DISTINCT p) FROM unnest(p_pools) p) THEN
        PERFORM tock.raise_invalid('pools', format(
            '%s: give 1 to 32 different pools, each a letter then up to 63 letters, digits, ''.'', ''_'' or ''-''',
            left(array_to_string(p_pools, ','), 200)));
    END IF;
    IF p_name IS NOT NULL AND p_name !~ '^[A-Za-z][A-Za-z0-9._-]{0,99}$' THEN
        PERFORM tock.raise_invalid('name', format(
            '%L: a worker''s name starts with a letter and has up to 100 letters, digits, ''.'', ''_'' or ''-''', left(p_name, 100)));
    END IF;
    -- This worker's own registration, whose answer it did not get (its call timed out, the server full): it
    -- again, not a second worker, nor its name taken by itself until the first is judged lost.
    SELECT w.id INTO v_holder FROM tock.workers w
    WHERE w.lease_token_hash = sha256(convert_to(p_lease_token, 'UTF8')) AND w.state IN ('running', 'stopping')
      AND w.name = coalesce(p_name, p_host || ':' || p_pid);
    IF FOUND THEN
        RETURN v_holder;
    END IF;
    IF p_name IS NOT NULL THEN
        SELECT w.id INTO v_holder FROM tock.workers w WHERE w.name = p_name AND w.state IN ('running', 'stopping');
        IF FOUND THEN
            PERFORM tock.rescue(v_now);
            IF EXISTS (SELECT 1 FROM tock.workers w WHERE w.id = v_holder AND w.state IN ('running', 'stopping')) THEN
                RAISE EXCEPTION 'worker name % is taken by live worker %: give another --name, or stop that worker first',
                    quote_literal(p_name), v_holder
                    USING ERRCODE = 'unique_violation', COLUMN = 'name';
            END IF;
        END IF;
    END IF;
    IF p_concurrency IS NULL OR p_concurrency NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('concurrency', format('%s is out of range 1-1000', p_concurrency));
    END IF;
    IF p_lease_token IS NULL AND NOT tock.caller_owns_schema() THEN
        RAISE EXCEPTION 'register_worker: give p_lease_token, a secret of 32 to 200 characters the worker keeps'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF length(p_lease_token) NOT BETWEEN 32 AND 200 THEN
        PERFORM tock.raise_invalid('lease_token', format('has %s characters; use 32 to 200', length(p_lease_token)));
    END IF;
    IF length(p_host) > 255 OR length(p_scripts_dir) > 4096 OR length(p_version) > 100 THEN
        PERFORM tock.raise_invalid('host', 'host (255), scripts_dir (4,096) or version (100) is too long');
    END IF;
    BEGIN
        INSERT INTO tock.workers (name, host, pid, concurrency, scripts_dir, version, started_at, last_heartbeat_at,
                                  lease_token_hash, pools)
        VALUES (coalesce(p_name, p_host || ':' || p_pid), p_host, p_pid, p_concurrency, p_scripts_dir, p_version, v_now, v_now,
                sha256(convert_to(p_lease_token, 'UTF8')), p_pools)
        RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        -- Another worker took the name between the look above and this insert.
        RAISE EXCEPTION 'worker name % is taken by a live worker: give another --name, or stop that worker first',
            quote_literal(p_name) USING ERRCODE = 'unique_violation', COLUMN = 'name';
    END;
    RETURN v_id;
END $$;
COMMENT ON FUNCTION tock.register_worker(text, int, int, text, text, timestamptz, text, text, text[]) IS
    'Registers a worker process and returns its id; later calls as this worker present p_lease_token.';

-- Puts runs running on p_worker back in the queue as the same attempt (none is used up): runs its worker handed back
-- (release_run) or never heard of (heartbeat). A run no longer running on p_worker is left alone; returns the runs
-- it put back.
CREATE OR REPLACE FUNCTION tock.requeue_runs(p_runs bigint[], p_worker bigint, p_now timestamptz)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_requeued bigint[];
BEGIN
    WITH requeued AS (
        -- Back into its job's pool, which may have changed while it ran (tock.tg_jobs__pool_moved moves only
        -- pending runs): in the old one nobody may serve it any more.
        UPDATE tock.runs
        SET status = 'pending', started_at = NULL, worker_id = NULL, timeout_at = NULL, run_after = p_now,
            pool = (SELECT j.pool FROM tock.jobs j WHERE j.id = tock.runs.job_id)
        WHERE id = ANY (p_runs) AND status = 'running' AND worker_id = p_worker
        RETURNING id
    ), unleased AS (
        DELETE FROM tock.run_leases l WHERE l.worker_id = p_worker AND l.run_id = ANY (ARRAY(SELECT r.id FROM requeued r))
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_requeued FROM requeued;
    RETURN v_requeued;
END $$;

-- A live worker's heartbeat; returns its state ('running', 'stopping'), or NULL when it is no longer
-- registered as alive (stopped, or marked lost): such a worker must stop.
-- This and the other functions a process calls over and over are PL/pgSQL, whose statements are planned once per
-- session; a LANGUAGE sql function is planned again at every call.
--
-- p_held, when given, lists every run the worker holds: scripts running, and ended ones whose result it is still
-- reporting. A worker sends it only while no claim of its is under way. A run running on the worker that it does not
-- hold, claimed more than p_unheld_after ago, is one whose claim committed but whose answer never reached the
-- worker (the connection dropped after the commit, or the answer came after the worker stopped waiting for it). Its
-- script never started, so it goes back to the queue without using an attempt, and the workers are told
-- (runs_notify_requeued). Left alone it would wait for rescue's orphan rule, its timeout plus 10 minutes, and
-- then count as a failed attempt. p_unheld_after must exceed the worker's call timeout, after which it stops
-- waiting for a claim's answer.
--
-- The queue's tables are often empty when autovacuum analyzes them, and their statistics then say "no rows" while
-- thousands wait. From such statistics a join of the leases to tock.runs becomes a walk of every run in flight for
-- each lease, while the heartbeat holds the worker's row that each of its finishes updates. So the calls that
-- workers and schedulers repeat read tock.runs only by id, from an array of the leases' run ids: an index probe
-- per run is the only plan.
DROP FUNCTION IF EXISTS tock.heartbeat(bigint, timestamptz);
DROP FUNCTION IF EXISTS tock.heartbeat(bigint, timestamptz, bigint[], interval);
CREATE OR REPLACE FUNCTION tock.heartbeat(
    p_worker bigint, p_now timestamptz DEFAULT now(), p_held bigint[] DEFAULT NULL,
    p_unheld_after interval DEFAULT '1 minute', p_lease_token text DEFAULT NULL, p_claim_error text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql
-- The walk of the worker's running runs stays one look into its leases (see tock.tick).
SET enable_seqscan = off
AS $$
DECLARE
    v_state text;
    v_unheld bigint[];
BEGIN
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    p_now := tock.checked_now(p_now);
    -- p_claim_error: the worker's claims keep failing (NULL: its last claim worked). Kept short: it is shown.
    UPDATE tock.workers SET last_heartbeat_at = p_now, claim_error = left(p_claim_error, 500),
        claim_failing_since = CASE WHEN p_claim_error IS NULL THEN NULL ELSE coalesce(claim_failing_since, p_now) END
    WHERE id = p_worker AND state IN ('running', 'stopping')
    RETURNING state INTO v_state;
    IF v_state IS NOT NULL AND p_held IS NOT NULL THEN
        -- Looked for first, then put back by id: an UPDATE of no row would still fire the statement triggers on
        -- tock.runs, each second per worker.
        SELECT array_agg(r.id ORDER BY r.id) INTO v_unheld
        FROM tock.runs r
        WHERE r.id = ANY (ARRAY(SELECT l.run_id FROM tock.run_leases l WHERE l.worker_id = p_worker))
          AND r.status = 'running' AND r.worker_id = p_worker
          AND r.started_at < p_now - p_unheld_after AND NOT (r.id = ANY (p_held));
        IF v_unheld IS NOT NULL THEN
            v_unheld := tock.requeue_runs(v_unheld, p_worker, p_now);
            RAISE LOG 'tock: worker % never got the answer to its claim of runs %: back in the queue', p_worker, v_unheld;
        END IF;
    END IF;
    RETURN v_state;
END $$;
COMMENT ON FUNCTION tock.heartbeat(bigint, timestamptz, bigint[], interval, text, text) IS
    'A worker is alive; with p_held, its runs it does not hold (a claim whose answer it never got) go back to the queue.';

-- A worker that stops claiming (graceful shutdown begins), then one that has stopped.
-- A stopped worker holds nothing: a run still leased to it is one whose claim's answer it never got, or whose
-- report it gave up on as it stopped. It ends as a lost worker's runs do (tock.rescue): failed, and retried at once
-- while attempts remain. Left on the stopped worker, which rescue no longer watches, nothing would end it until
-- long past its timeout.
DROP FUNCTION IF EXISTS tock.set_worker_state(bigint, text, timestamptz);
CREATE OR REPLACE FUNCTION tock.set_worker_state(p_worker bigint, p_state text, p_now timestamptz DEFAULT now(),
                                                 p_lease_token text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_name text;
BEGIN
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    p_now := tock.checked_now(p_now);
    IF p_state NOT IN ('stopping', 'stopped') THEN
        PERFORM tock.raise_invalid('state', format('%L is not stopping or stopped', p_state));
    END IF;
    UPDATE tock.workers
    SET state = p_state, stopped_at = CASE WHEN p_state = 'stopped' THEN p_now END, last_heartbeat_at = p_now
    WHERE id = p_worker AND state IN ('running', 'stopping')
    RETURNING name INTO v_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_state = 'stopped' THEN
        PERFORM tock.fail_over_leases(p_worker, format('worker %s stopped without reporting how it ended', v_name), p_now);
    END IF;
    RETURN true;
END $$;
COMMENT ON FUNCTION tock.set_worker_state(bigint, text, timestamptz, text) IS
    'A worker (presenting its lease token) says it is stopping (claims nothing more) or stopped (a run still leased to it fails over).';

-- Claims up to p_max runnable runs for a live worker from the pools it serves: in each pool highest priority first,
-- then oldest; SKIP LOCKED, so concurrent claimers never wait on or take each other's runs. A worker of several
-- pools gives each its share of the claim first (p_max divided among them), then what is left to the pools that
-- filled their share, starting at a random pool each claim (a claim of one run, or fewer runs than pools, would
-- always go to the first): a deep pool does not starve the others, and priorities order runs within a pool. Each pool
-- is a walk of runs_claim_idx from that pool's first entry: no other pool's runs are read. Returns what the worker
-- needs to run them.
DROP FUNCTION IF EXISTS tock.claim_runs(bigint, int, timestamptz);
-- Since migration 0022 a claimed run comes with its arguments, parameters put in, and extras: its environment and
-- the secrets it needs (tock.run_extras; NULL for nothing). The result changed, so the function before it goes.
DO $$
BEGIN
    IF NOT 'extras' = ANY (coalesce((SELECT p.proargnames FROM pg_proc p
                                    WHERE p.oid = to_regprocedure('tock.claim_runs(bigint, int, timestamptz, text)')), '{extras}')) THEN
        DROP FUNCTION tock.claim_runs(bigint, int, timestamptz, text);
    END IF;
    IF NOT 'extras' = ANY (coalesce((SELECT p.proargnames FROM pg_proc p
                                    WHERE p.oid = to_regprocedure('tock.claim_limited(bigint, text, int, timestamptz)')), '{extras}')) THEN
        DROP FUNCTION tock.claim_limited(bigint, text, int, timestamptz);
    END IF;
END $$;
CREATE OR REPLACE FUNCTION tock.claim_runs(p_worker bigint, p_max int, p_now timestamptz DEFAULT now(),
                                           p_lease_token text DEFAULT NULL)
RETURNS TABLE (
    run_id bigint, job_id bigint, job_name text, script text, args text[], timeout_seconds float8,
    attempt int, trigger text, scheduled_for timestamptz, extras jsonb)
-- PL/pgSQL for its plan cache: a LANGUAGE sql function's statement is planned again on every call, and this
-- one is the hottest statement Tock has. The cache alone is not enough: left to choose (plan_cache_mode auto),
-- PostgreSQL re-plans this statement on every call, because the generic plan's estimate (any p_max, any p_now)
-- looks worse than a plan for the actual values. Planning it weighs the many indexes of tock.runs, most of them
-- partial, and costs more than the claim itself; the generic plan is the same index scan of runs_claim_idx and
-- primary-key probes.
-- No sequential scans either, for the reason tock.tick gives: the overlap 'queue' probes of runs must stay index
-- probes when the statistics say one job owns every run.
-- No bitmap scans and no sorts: the claim must walk runs_claim_idx in its order and stop after p_max runs. The
-- generic plan cannot know p_max and assumes a tenth of the ready runs; with a deep queue, reading every ready run
-- through a bitmap of two indexes and sorting them (on disk, the job probed for each) then looks cheaper than the
-- walk, and is far slower. Only that index yields the claim's order, so with sorts priced out nothing else can win.
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_pools text[];
    v_pool text;
    v_limited text[] := '{}';
    v_passed text[] := '{}';
    v_full text[] := '{}';
    v_share int;
    v_take int;
    v_left int := p_max;
    v_got int;
    v_turn int;
    v_pass int;
    v_offset int;
BEGIN
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    p_now := tock.checked_now(p_now);
    IF p_max IS NULL OR p_max NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('p_max', format('%s is out of range 1-1000', p_max));
    END IF;
    -- Only a live worker claims (a stopping one drains).
    SELECT w.pools INTO v_pools FROM tock.workers w WHERE w.id = p_worker AND w.state = 'running';
    IF coalesce(cardinality(v_pools), 0) = 0 THEN
        RETURN;
    END IF;
    v_share := ceil(p_max::numeric / cardinality(v_pools))::int;
    v_offset := floor(random() * cardinality(v_pools))::int;
    -- The pools with limits (their own or a job's) are claimed one at a time: each claim of one holds its lock to
    -- the end of the transaction, taken here before any is counted. Tried, never waited for: a claim never queues
    -- behind another (nor behind a session that took the lock and idles), it passes the pool over, and
    -- tock.claim_committed tells its worker to claim again in a moment (tock.claim_passed_over).
    PERFORM set_config('tock.claim_passed_over', '', false);
    FOREACH v_pool IN ARRAY tock.limited_pools(v_pools) LOOP
        IF pg_try_advisory_xact_lock(tock.worker_lock_key() + 4, hashtext(v_pool)) THEN
            v_limited := v_limited || v_pool;
        ELSE
            v_passed := v_passed || v_pool;
            PERFORM set_config('tock.claim_passed_over', 'yes', false);
        END IF;
    END LOOP;
    -- The claim's commit does not wait for its WAL flush (the run-now before it and the finish after it do):
    -- it saves that flush from the path to the script's start. If PostgreSQL itself crashes within the moment
    -- before the WAL writer flushes, the claim is undone and the run is claimed again: it can start twice, the
    -- at-least-once guarantee a worker's crash already gives. No run is lost.
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR v_pass IN 1 .. CASE WHEN cardinality(v_pools) > 1 THEN 2 ELSE 1 END LOOP
    FOR v_turn IN 1 .. cardinality(v_pools) LOOP
    v_pool := v_pools[1 + (v_turn - 1 + v_offset) % cardinality(v_pools)];
    CONTINUE WHEN v_pass = 2 AND NOT v_pool = ANY (v_full);
    CONTINUE WHEN v_pool = ANY (v_passed);
    v_take := CASE WHEN v_pass = 1 THEN least(v_share, v_left) ELSE v_left END;
    IF v_pool = ANY (v_limited) THEN
        RETURN QUERY SELECT * FROM tock.claim_limited(p_worker, v_pool, v_take, p_now);
    ELSE
    RETURN QUERY
    WITH claimable AS (
        SELECT r.id
        FROM tock.runs r
        WHERE r.pool = v_pool AND r.status = 'pending' AND r.run_after <= p_now
          -- Overlap 'queue': one run of the job at a time, oldest first. The transaction-scoped advisory lock
          -- keeps two claimers from taking runs of the same job before either commits.
          -- A probe of the job per candidate, not NOT EXISTS, which the planner turns into a hash of every
          -- 'queue' job per claim.
          AND ((SELECT j.overlap FROM tock.jobs j WHERE j.id = r.job_id) <> 'queue'
               OR (NOT EXISTS (SELECT 1 FROM tock.runs x WHERE x.job_id = r.job_id AND x.status = 'running')
                   AND r.id = (SELECT min(p.id) FROM tock.runs p WHERE p.job_id = r.job_id AND p.status = 'pending')
                   AND pg_try_advisory_xact_lock(tock.worker_lock_key() + 1, r.job_id::int)))
        ORDER BY r.priority DESC, r.run_after, r.id
        LIMIT v_take
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE tock.runs r
        SET status = 'running', started_at = p_now, worker_id = p_worker,
            -- The job's timeout as of this claim, which the worker enforces: rescue reads this, not the job's
            -- timeout as it may be later.
            timeout_at = p_now + (SELECT j.timeout FROM tock.jobs j WHERE j.id = r.job_id)
        -- An id list, not a join: always primary-key lookups, never a scan of the queue to hash it.
        WHERE r.id = ANY (ARRAY(SELECT c.id FROM claimable c))
        RETURNING r.id, r.job_id, r.attempt, r.trigger, r.scheduled_for, r.priority, r.run_after, r.timeout_at, r.params,
                  r.upstream
    ), leased AS (
        -- The index of running runs by worker (heartbeat, rescue, cancel requests): a row of its own, so that the
        -- update above changes no indexed column and stays HOT.
        INSERT INTO tock.run_leases (worker_id, run_id, pool, job_id) SELECT p_worker, c.id, v_pool, c.job_id FROM claimed c
    )
    -- The common run, with no parameters, chain, environment, secrets or request, calls no function for them.
    SELECT c.id, j.id, j.name, coalesce(j.script, ''),
           CASE WHEN c.params IS NULL THEN j.args ELSE tock.run_args(j.args, c.params) END,
           extract(epoch FROM c.timeout_at - p_now)::float8, c.attempt, c.trigger, c.scheduled_for,
           CASE WHEN c.params IS NOT NULL OR c.upstream IS NOT NULL OR j.env IS NOT NULL OR j.secrets IS NOT NULL
                     OR j.http IS NOT NULL
                THEN tock.run_extras(c.params, c.upstream, j.env, j.secrets, j.http) END
    FROM claimed c JOIN tock.jobs j ON j.id = c.job_id
    ORDER BY c.priority DESC, c.run_after, c.id;
    END IF;
    GET DIAGNOSTICS v_got = ROW_COUNT;
    v_left := v_left - v_got;
    IF v_pass = 1 AND v_got = v_take THEN
        v_full := v_full || v_pool;
    END IF;
    EXIT WHEN v_left <= 0;
    END LOOP;
    EXIT WHEN v_left <= 0;
    END LOOP;
END
$$;
COMMENT ON FUNCTION tock.claim_runs(bigint, int, timestamptz, text) IS
    'Moves up to p_max pending runs to running for worker p_worker (FOR UPDATE SKIP LOCKED) and returns them.';

-- What a worker calls to claim: tock.claim_runs, committed before it answers, in one round trip. A statement on its
-- own commits at the Sync after its rows and CommandComplete have gone, and a client may take the rows as final
-- then: when the server shut down between the two, the claim was rolled back, the worker had started the scripts,
-- and another worker started them again (FaultTests' restart under load). BEGIN and COMMIT around the call close
-- that, for two more round trips per claim; a procedure commits inside the CALL, and its answer leaves only after.
-- A procedure answers one row: the claimed runs come as one array per column, in claim order (each run's arguments
-- as a JSON array, scheduled_for in epoch seconds or NaN; arrays, not one JSON document, which cost a worker more to
-- decode than the claim itself). Not SECURITY DEFINER (such a procedure may not commit) and no SET clause (nor may
-- one with it): it runs as its caller and calls only tock.claim_runs, which checks the lease token.
DROP PROCEDURE IF EXISTS tock.claim_committed(bigint, int, text, text);
-- The claim a worker makes since migration 0022's release: besides the runs, p_next_delayed, when it took fewer
-- runs than asked: when the first run of the worker's pools that was not yet due at the claim's own time comes due
-- (a run enqueued ahead of its fire time, a retry's backoff, a rate limit's next room), which no NOTIFY will
-- announce. Asked as of the claim's transaction time, in the same round trip: a worker that asked afterwards, as of
-- its own reckoning of the claim's time, missed a run that came due in between when its question reached the server
-- late (a loaded machine), and slept until its safety sweep. And p_extras: each run's environment and the secrets
-- it needs, a JSON object or '' (tock.run_extras). The two below stay for workers of before.
CREATE OR REPLACE PROCEDURE tock.claim_committed(
    p_worker bigint, p_max int, p_lease_token text,
    INOUT p_runs bigint[], INOUT p_jobs bigint[], INOUT p_job_names text[],
    INOUT p_scripts text[], INOUT p_args text[], INOUT p_timeouts float8[],
    INOUT p_attempts int[], INOUT p_triggers text[], INOUT p_scheduled_for float8[], INOUT p_next_delayed timestamptz,
    INOUT p_extras text[])
LANGUAGE plpgsql AS $$
DECLARE
    -- The claim's time (its transaction's, which the COMMIT inside ends): a run due by then was the claim's to take
    -- or is announced by NOTIFY when it commits; one due after it is what this looks for.
    v_claimed_at constant timestamptz := pg_catalog.now();
BEGIN
    SELECT coalesce(pg_catalog.array_agg(c.run_id ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(c.job_id ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(c.job_name ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(c.script ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(pg_catalog.array_to_json(c.args)::text ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(c.timeout_seconds ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(c.attempt ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(c.trigger ORDER BY c.n), '{}'),
           coalesce(pg_catalog.array_agg(coalesce(pg_catalog.date_part('epoch', c.scheduled_for), 'NaN') ORDER BY c.n), '{}'),
           -- '' for none: postgres-nio decodes no array holding NULLs.
           coalesce(pg_catalog.array_agg(coalesce(c.extras::text, '') ORDER BY c.n), '{}')
    INTO p_runs, p_jobs, p_job_names, p_scripts, p_args, p_timeouts, p_attempts, p_triggers, p_scheduled_for, p_extras
    FROM tock.claim_runs(p_worker, p_max, pg_catalog.now(), p_lease_token) WITH ORDINALITY AS c(run_id, job_id, job_name,
         script, args, timeout_seconds, attempt, trigger, scheduled_for, extras, n);
    COMMIT;
    IF cardinality(p_runs) < p_max THEN
        p_next_delayed := tock.next_delayed_run(v_claimed_at, p_worker);
    END IF;
    -- A limited pool another claim held was passed over (tock.claim_runs): look again once that claim is done.
    IF current_setting('tock.claim_passed_over', true) = 'yes' THEN
        p_next_delayed := least(p_next_delayed, pg_catalog.clock_timestamp() + interval '100 milliseconds');
    END IF;
END $$;
COMMENT ON PROCEDURE tock.claim_committed(bigint, int, text, bigint[], bigint[], text[], text[], text[], float8[], int[],
                                          text[], float8[], timestamptz, text[]) IS
    'tock.claim_runs committed before it answers (CALL, one round trip): the claimed runs, one array per column.';

-- The claim of workers from migration 0019's release: no environment.
CREATE OR REPLACE PROCEDURE tock.claim_committed(
    p_worker bigint, p_max int, p_lease_token text,
    INOUT p_runs bigint[], INOUT p_jobs bigint[], INOUT p_job_names text[],
    INOUT p_scripts text[], INOUT p_args text[], INOUT p_timeouts float8[],
    INOUT p_attempts int[], INOUT p_triggers text[], INOUT p_scheduled_for float8[], INOUT p_next_delayed timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_extras text[];
BEGIN
    CALL tock.claim_committed(p_worker, p_max, p_lease_token, p_runs, p_jobs, p_job_names, p_scripts, p_args, p_timeouts,
                              p_attempts, p_triggers, p_scheduled_for, p_next_delayed, v_extras);
END $$;

-- The claim of workers from before migration 0019's release: neither when a run comes due nor an environment.
CREATE OR REPLACE PROCEDURE tock.claim_committed(
    p_worker bigint, p_max int, p_lease_token text,
    INOUT p_runs bigint[] DEFAULT NULL, INOUT p_jobs bigint[] DEFAULT NULL, INOUT p_job_names text[] DEFAULT NULL,
    INOUT p_scripts text[] DEFAULT NULL, INOUT p_args text[] DEFAULT NULL, INOUT p_timeouts float8[] DEFAULT NULL,
    INOUT p_attempts int[] DEFAULT NULL, INOUT p_triggers text[] DEFAULT NULL, INOUT p_scheduled_for float8[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    v_next_delayed timestamptz;
    v_extras text[];
BEGIN
    CALL tock.claim_committed(p_worker, p_max, p_lease_token, p_runs, p_jobs, p_job_names, p_scripts, p_args, p_timeouts,
                              p_attempts, p_triggers, p_scheduled_for, v_next_delayed, v_extras);
END $$;

-- Writes running runs' output so far, replacing what was there (report_output). A finished run's output goes
-- into tock.finished_runs with it (tock.end_runs).
DROP FUNCTION IF EXISTS tock.store_output(bigint, text, bigint, boolean, timestamptz);
-- A run keeps at most the last 4 MiB characters of its output (a worker keeps --output-cap, 1 MiB by default): a
-- worker's report cannot fill the disk.
CREATE OR REPLACE FUNCTION tock.store_outputs(
    p_runs bigint[], p_outputs text[], p_bytes_total bigint[], p_truncated boolean[], p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tock.run_output (run_id, output, bytes_total, truncated, updated_at)
    SELECT o.run, right(coalesce(o.output, ''), 4194304), greatest(coalesce(o.bytes, 0), 0),
           coalesce(o.truncated, false) OR length(o.output) > 4194304, p_now
    FROM unnest(p_runs, p_outputs, p_bytes_total, p_truncated) AS o(run, output, bytes, truncated)
    ON CONFLICT (run_id) DO UPDATE
    SET output = EXCLUDED.output, bytes_total = EXCLUDED.bytes_total, truncated = EXCLUDED.truncated,
        updated_at = EXCLUDED.updated_at;
END $$;

-- Records how a batch of runs ended, with their output, in one transaction: a worker sends every run that
-- ended while its previous report was in flight. Only the worker holding a running run can finish it, once;
-- returns the runs it finished (a run not running on p_worker any more is left alone and left out).
DROP FUNCTION IF EXISTS tock.finish_runs(bigint, bigint[], text[], int[], text[], text[], bigint[], boolean[], timestamptz);
CREATE OR REPLACE FUNCTION tock.finish_runs(
    p_worker bigint, p_runs bigint[], p_statuses text[], p_exit_codes int[], p_errors text[],
    p_outputs text[], p_bytes_total bigint[], p_truncated boolean[], p_now timestamptz DEFAULT now(),
    p_lease_token text DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    v_bad text;
    v_finished bigint[];
    v_failed record;
BEGIN
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    p_now := tock.checked_now(p_now);
    IF p_runs IS NULL OR cardinality(p_runs) > 1000 THEN
        PERFORM tock.raise_invalid('p_runs', format('%s runs in one finish; send 0 to 1,000',
                                                    coalesce(cardinality(p_runs)::text, 'NULL')));
    END IF;
    IF array_ndims(p_runs) > 1 OR cardinality(p_statuses) IS DISTINCT FROM cardinality(p_runs)
       OR cardinality(p_exit_codes) IS DISTINCT FROM cardinality(p_runs)
       OR cardinality(p_errors) IS DISTINCT FROM cardinality(p_runs)
       OR cardinality(p_outputs) IS DISTINCT FROM cardinality(p_runs)
       OR cardinality(p_bytes_total) IS DISTINCT FROM cardinality(p_runs)
       OR cardinality(p_truncated) IS DISTINCT FROM cardinality(p_runs) THEN
        PERFORM tock.raise_invalid('p_runs', 'every array must have one element per run');
    END IF;
    -- An error is shown in lists: a few KB, not a second copy of the output.
    p_errors := ARRAY(SELECT left(e, 4096) FROM unnest(p_errors) WITH ORDINALITY u(e, n) ORDER BY n);
    SELECT s INTO v_bad FROM unnest(p_statuses) s
    WHERE s IS NULL OR s NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled') LIMIT 1;
    IF FOUND THEN
        PERFORM tock.raise_invalid('status', format('%L is not succeeded, failed, timed_out or cancelled', v_bad));
    END IF;
    -- Succeeded and cancelled attempts need no retry decision: one statement ends them all.
    SELECT tock.end_runs('running', p_worker, array_agg(i.run), array_agg(i.status), array_agg(i.exit_code),
                         array_agg(i.error), array_agg(i.output), array_agg(i.bytes), array_agg(i.truncated), p_now)
    INTO v_finished
    FROM unnest(p_runs, p_statuses, p_exit_codes, p_errors, p_outputs, p_bytes_total, p_truncated)
         AS i(run, status, exit_code, error, output, bytes, truncated)
    WHERE i.status IN ('succeeded', 'cancelled');
    v_finished := coalesce(v_finished, '{}');
    -- Failed and timed-out attempts may be retried or end dead: tock.end_attempt decides, run by run.
    FOR v_failed IN
        SELECT * FROM unnest(p_runs, p_statuses, p_exit_codes, p_errors, p_outputs, p_bytes_total, p_truncated)
                      AS i(run, status, exit_code, error, output, bytes, truncated)
        WHERE i.status IN ('failed', 'timed_out')
    LOOP
        IF tock.end_attempt(v_failed.run, p_worker, v_failed.status, v_failed.exit_code, v_failed.error, p_now,
                            p_retry_now => false, p_output => v_failed.output, p_bytes_total => v_failed.bytes,
                            p_truncated => v_failed.truncated) THEN
            v_finished := v_finished || v_failed.run;
        END IF;
    END LOOP;
    IF cardinality(v_finished) > 0 THEN
        UPDATE tock.workers SET runs_processed = runs_processed + cardinality(v_finished) WHERE id = p_worker;
    END IF;
    -- A report repeated because the answer to the first was lost (its commit happened): the runs it ended then, as
    -- this worker reported them, count as finished. A run that ended otherwise (rescued from a worker judged lost,
    -- with its own error and no exit code) stays out: the worker's report of it is refused.
    IF cardinality(v_finished) < cardinality(p_runs) THEN
        v_finished := v_finished || ARRAY(
            SELECT i.run
            FROM unnest(p_runs, p_statuses, p_exit_codes, p_errors) AS i(run, status, exit_code, error)
            JOIN tock.finished_runs f ON f.id = i.run
            WHERE NOT i.run = ANY (v_finished) AND f.worker_id = p_worker
              AND (f.status = i.status OR (f.status = 'dead' AND i.status IN ('failed', 'timed_out')))
              AND f.exit_code IS NOT DISTINCT FROM i.exit_code
              AND (f.error IS NOT DISTINCT FROM i.error OR starts_with(f.error, i.error || ' (attempt ')));
    END IF;
    RETURN v_finished;
END $$;
COMMENT ON FUNCTION tock.finish_runs(bigint, bigint[], text[], int[], text[], text[], bigint[], boolean[], timestamptz, text) IS
    'Ends a batch of running runs (succeeded, failed, timed_out, cancelled) with their output; returns those it finished.';

-- What a worker calls to report how its runs ended: tock.finish_runs, committed before it answers (the reason
-- tock.claim_committed gives). A finish the server rolled back while the worker took its answer as final left the
-- run running on a worker that no longer held it; a minute later its heartbeat put the run back in the queue and it
-- ran again (FaultTests' restart). No exit code is NULL in p_exit_codes, no error '' in p_errors: a worker's client
-- binds no arrays with NULLs, and a CALL's arguments may not be subqueries that would map them.
DROP PROCEDURE IF EXISTS tock.finish_committed(bigint, text, bigint[], text[], bigint[], text[], text[], bigint[], boolean[], bigint[]);
CREATE OR REPLACE PROCEDURE tock.finish_committed(
    p_worker bigint, p_lease_token text, p_runs bigint[], p_statuses text[], p_exit_codes bigint[], p_errors text[],
    p_outputs text[], p_bytes_total bigint[], p_truncated boolean[], INOUT p_finished bigint[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    p_finished := tock.finish_runs(
        p_worker, p_runs, p_statuses,
        ARRAY(SELECT NULLIF(c, -9223372036854775808)::int FROM pg_catalog.unnest(p_exit_codes) WITH ORDINALITY u(c, n) ORDER BY n),
        ARRAY(SELECT NULLIF(e, '') FROM pg_catalog.unnest(p_errors) WITH ORDINALITY u(e, n) ORDER BY n),
        p_outputs, p_bytes_total, p_truncated, pg_catalog.now(), p_lease_token);
    COMMIT;
END $$;
COMMENT ON PROCEDURE tock.finish_committed(bigint, text, bigint[], text[], bigint[], text[], text[], bigint[], boolean[], bigint[]) IS
    'tock.finish_runs committed before it answers (CALL, one round trip): the runs it finished.';

-- One run's end: tock.finish_runs with one element.
DROP FUNCTION IF EXISTS tock.finish_run(bigint, bigint, text, int, text, text, bigint, boolean, timestamptz);
CREATE OR REPLACE FUNCTION tock.finish_run(
    p_run bigint, p_worker bigint, p_status text, p_exit_code int DEFAULT NULL, p_error text DEFAULT NULL,
    p_output text DEFAULT '', p_bytes_total bigint DEFAULT 0, p_truncated boolean DEFAULT false,
    p_now timestamptz DEFAULT now(), p_lease_token text DEFAULT NULL)
RETURNS boolean LANGUAGE sql AS $$
    SELECT p_run = ANY (tock.finish_runs(p_worker, ARRAY[p_run], ARRAY[p_status], ARRAY[p_exit_code], ARRAY[p_error],
                                         ARRAY[p_output], ARRAY[p_bytes_total], ARRAY[p_truncated], p_now, p_lease_token))
$$;
COMMENT ON FUNCTION tock.finish_run(bigint, bigint, text, int, text, text, bigint, boolean, timestamptz, text) IS
    'Ends a running run as succeeded, failed, timed_out or cancelled, with its output; false if it was not running on that worker.';

-- Hands a running run back to the queue without using up an attempt (its worker is shutting down and had to
-- stop the script). Only the worker holding the run can release it; returns false otherwise.
DROP FUNCTION IF EXISTS tock.release_run(bigint, bigint, timestamptz);
CREATE OR REPLACE FUNCTION tock.release_run(p_run bigint, p_worker bigint, p_now timestamptz DEFAULT now(),
                                            p_lease_token text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    p_now := tock.checked_now(p_now);
    RETURN cardinality(tock.requeue_runs(ARRAY[p_run], p_worker, p_now)) > 0;
END $$;
COMMENT ON FUNCTION tock.release_run(bigint, bigint, timestamptz, text) IS
    'Puts a running run back to pending (same attempt): a worker that shuts down hands back what it could not finish.';

-- The delay before retry attempt p_attempt + 1: retry_base * 2^(attempt-1), capped, with ±25% jitter so a burst
-- of failures does not retry in lockstep.
-- In seconds, as float: a base of a day doubled 30 times is more than an interval holds.
CREATE OR REPLACE FUNCTION tock.retry_delay(p_base interval, p_cap interval, p_attempt int)
RETURNS interval LANGUAGE sql VOLATILE AS $$
    SELECT make_interval(secs => least(extract(epoch FROM p_cap)::float8,
                                       extract(epoch FROM p_base)::float8 * power(2, least(greatest(p_attempt, 1) - 1, 30)))
                                 * (0.75 + random() * 0.5))
$$;

-- Ends a running attempt held by p_worker (NULL: whoever holds it, for rescue). A failed or timed-out attempt with
-- attempts left gets a new run (trigger 'retry', attempt + 1, linked to the first) after the backoff, or at once
-- when p_retry_now; one that used the last of several attempts ends 'dead' (the dead letters). Returns false when
-- the run was not running on that worker (a late or duplicate report), changing nothing.
DROP FUNCTION IF EXISTS tock.end_attempt(bigint, bigint, text, int, text, timestamptz, boolean);
CREATE OR REPLACE FUNCTION tock.end_attempt(
    p_run bigint, p_worker bigint, p_status text, p_exit_code int, p_error text, p_now timestamptz,
    p_retry_now boolean, p_output text DEFAULT '', p_bytes_total bigint DEFAULT 0, p_truncated boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_run tock.runs;
    v_job tock.jobs;
    v_status text := p_status;
    v_retry bigint;
BEGIN
    SELECT * INTO v_run FROM tock.runs
    WHERE id = p_run AND status = 'running' AND (p_worker IS NULL OR worker_id = p_worker)
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT * INTO v_job FROM tock.jobs WHERE id = v_run.job_id;
    IF p_status IN ('failed', 'timed_out') AND v_run.cancel_requested_at IS NULL THEN
        IF v_run.attempt < v_job.max_attempts THEN
            INSERT INTO tock.runs (job_id, trigger, priority, attempt, first_run_id, scheduled_for, enqueued_at, run_after,
                                   pool, params, upstream)
            VALUES (v_run.job_id, 'retry', v_run.priority, v_run.attempt + 1, coalesce(v_run.first_run_id, v_run.id),
                    v_run.scheduled_for, p_now,
                    p_now + CASE WHEN p_retry_now THEN interval '0'
                                 ELSE tock.retry_delay(v_job.retry_base, v_job.retry_cap, v_run.attempt) END,
                    v_job.pool, v_run.params, v_run.upstream)
            RETURNING id INTO v_retry;
        ELSIF v_job.max_attempts > 1 THEN
            v_status := 'dead';
        END IF;
    END IF;
    PERFORM tock.end_runs('running', v_run.worker_id, ARRAY[p_run], ARRAY[v_status], ARRAY[p_exit_code],
        ARRAY[CASE WHEN v_status = 'dead'
                   THEN format('%s (attempt %s of %s: no attempts left)', coalesce(p_error, p_status), v_run.attempt,
                               v_job.max_attempts)
                   ELSE p_error END],
        ARRAY[p_output], ARRAY[p_bytes_total], ARRAY[p_truncated], p_now, ARRAY[v_retry]);
    RETURN true;
END $$;

-- How the runs still leased to a worker that is gone end (tock.rescue for a lost worker, tock.set_worker_state for
-- one that stopped without reporting them): failed with p_error, retried at once while attempts remain. Returns how
-- many it ended.
CREATE OR REPLACE FUNCTION tock.fail_over_leases(p_worker bigint, p_error text, p_now timestamptz)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_run bigint;
    v_count int := 0;
BEGIN
    FOR v_run IN SELECT l.run_id FROM tock.run_leases l WHERE l.worker_id = p_worker LOOP
        IF tock.end_attempt(v_run, p_worker, 'failed', NULL, p_error, p_now, p_retry_now => true) THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    RETURN v_count;
END $$;

-- The cancel of runs in flight (tock.cancel, tock.bulk_runs): the pending ones end at once as 'cancelled'; the
-- running ones are marked, and their workers (told by NOTIFY tock_cancel) send SIGTERM to each script's process
-- group, then SIGKILL after their grace, and finish them as 'cancelled'. Runs that ended are left as they are.
-- Returns the runs cancelled and those asked to stop.
CREATE OR REPLACE FUNCTION tock.cancel_runs(p_runs bigint[], p_now timestamptz, OUT cancelled bigint[], OUT cancelling bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_count constant int := cardinality(p_runs);
BEGIN
    cancelled := tock.end_runs('pending', NULL, p_runs, array_fill('cancelled'::text, ARRAY[v_count]),
                               array_fill(NULL::int, ARRAY[v_count]), array_fill('cancelled before it started'::text, ARRAY[v_count]),
                               array_fill(''::text, ARRAY[v_count]), array_fill(0::bigint, ARRAY[v_count]),
                               array_fill(false, ARRAY[v_count]), p_now);
    WITH asked AS (
        UPDATE tock.runs r SET cancel_requested_at = coalesce(r.cancel_requested_at, p_now)
        WHERE r.id = ANY (p_runs) AND r.status = 'running'
        RETURNING r.id
    )
    SELECT coalesce(array_agg(a.id ORDER BY a.id), '{}') INTO cancelling FROM asked a;
    PERFORM pg_notify('tock_cancel', i::text) FROM unnest(cancelling) i;
END $$;

-- Cancels a run (tock.cancel_runs): 'cancelled' (it was pending) or 'cancelling' (its worker is stopping it). A
-- finished run cannot be cancelled (SQLSTATE 55000).
CREATE OR REPLACE FUNCTION tock.cancel(p_run bigint, p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_done record;
BEGIN
    p_now := tock.checked_now(p_now);
    v_done := tock.cancel_runs(ARRAY[p_run], p_now);
    IF cardinality(v_done.cancelled) > 0 THEN
        PERFORM tock.audit_run('run.cancel', p_run, '{"status": "pending"}', '{"status": "cancelled"}');
        RETURN 'cancelled';
    END IF;
    IF cardinality(v_done.cancelling) > 0 THEN
        PERFORM tock.audit_run('run.cancel', p_run, '{"status": "running"}', '{"status": "cancelling"}');
        RETURN 'cancelling';
    END IF;
    SELECT status INTO v_status FROM tock.finished_runs WHERE id = p_run;
    IF v_status IS NULL THEN
        RAISE EXCEPTION 'run: unknown run %', p_run USING ERRCODE = 'no_data_found', COLUMN = 'run';
    END IF;
    RAISE EXCEPTION 'run: run % already ended (%); nothing to cancel', p_run, v_status
        USING ERRCODE = 'object_not_in_prerequisite_state', COLUMN = 'run';
END $$;
COMMENT ON FUNCTION tock.cancel(bigint, timestamptz) IS 'Cancels a pending run at once, or asks the worker running it to stop it.';

-- Enqueues the next attempt of a run that ended (tock.retry, tock.bulk_runs): with the values it ran with and what
-- started it, linked to its chain's first run, and recorded as its retry (finished_runs.retried_by). Returns the new
-- run's id, or NULL when the history holds no such run.
CREATE OR REPLACE FUNCTION tock.enqueue_retry(p_run bigint, p_now timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO tock.runs (job_id, trigger, priority, attempt, first_run_id, scheduled_for, enqueued_at, run_after, pool,
                           params, upstream)
    SELECT f.job_id, 'retry', f.priority, f.attempt + 1, coalesce(f.first_run_id, f.id), f.scheduled_for, p_now, p_now,
           j.pool, f.params, f.upstream
    FROM tock.finished_runs f JOIN tock.jobs j ON j.id = f.job_id
    WHERE f.id = p_run
    RETURNING id INTO v_id;
    UPDATE tock.finished_runs SET retried_by = v_id WHERE id = p_run AND v_id IS NOT NULL;
    RETURN v_id;
END $$;

-- Runs a finished run's job again as a new attempt linked to it (retry from the dead letters); returns the new id.
CREATE OR REPLACE FUNCTION tock.retry(p_run bigint, p_now timestamptz DEFAULT now())
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_run record;
    v_id bigint;
BEGIN
    p_now := tock.checked_now(p_now);
    SELECT id, job_id INTO v_run FROM tock.finished_runs WHERE id = p_run;
    IF NOT FOUND THEN
        SELECT status INTO v_run FROM tock.runs WHERE id = p_run;
        IF FOUND THEN
            RAISE EXCEPTION 'run: run % is still %; retry a run that has ended', p_run, v_run.status
                USING ERRCODE = 'object_not_in_prerequisite_state', COLUMN = 'run';
        END IF;
        RAISE EXCEPTION 'run: unknown run %', p_run USING ERRCODE = 'no_data_found', COLUMN = 'run';
    END IF;
    v_id := tock.enqueue_retry(p_run, p_now);
    PERFORM tock.audit_run('run.retry', p_run, NULL, jsonb_build_object('run_id', v_id), v_run.job_id);
    RETURN v_id;
END $$;
COMMENT ON FUNCTION tock.retry(bigint, timestamptz) IS
    'Runs an ended run''s job again as a new attempt linked to it (retried_by); returns the new run''s id.';

-- This server's timeline: the first 8 hex digits of its current WAL file's name. NULL on a standby.
CREATE OR REPLACE FUNCTION tock.current_timeline()
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN NOT pg_is_in_recovery()
                THEN ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END
$$;

-- When the server's current run began: the postmaster's start, or the crash recovery since (a backend killed:
-- PostgreSQL ends every session and recovers without restarting the postmaster, and resets its shared statistics
-- as it does), or the promotion that made this server the primary (a new timeline, first seen by tock.rescue():
-- tock.note_timeline). A session lock taken before it is gone, whatever tock.workers says (the rows came over from
-- the old primary by replication). A DBA's pg_stat_reset_shared('bgwriter') moves it too: live workers are then
-- judged by their heartbeats alone until they next reconnect.
CREATE OR REPLACE FUNCTION tock.server_started_at()
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT greatest(pg_postmaster_start_time(), pg_stat_get_bgwriter_stat_reset_time(),
                    (SELECT t.first_seen FROM tock.timelines t WHERE t.timeline = tock.current_timeline()))
$$;

-- Records when this timeline was first seen (tock.rescue() calls it first, each second): on a promoted standby, the
-- moment the first scheduler reached it, which is as early as any worker could have held its lock there.
CREATE OR REPLACE FUNCTION tock.note_timeline(p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_timeline constant bigint := tock.current_timeline();
BEGIN
    IF v_timeline IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tock.timelines WHERE timeline = v_timeline) THEN
        INSERT INTO tock.timelines (timeline, first_seen) VALUES (v_timeline, p_now) ON CONFLICT DO NOTHING;
    END IF;
END $$;

-- A worker's LISTEN connection calls this on every (re)connect: it takes the worker's session lock, which
-- PostgreSQL drops the moment the session ends, and records that the worker has held it. tock.rescue() goes by the
-- lock only from then on: a worker whose first connect is slow is judged by its heartbeats until it has one.
DROP FUNCTION IF EXISTS tock.hold_worker_session(bigint);
CREATE OR REPLACE FUNCTION tock.hold_worker_session(p_worker bigint, p_lease_token text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_locked boolean;
BEGIN
    -- Another's lock would keep a dead worker looking alive to tock.rescue().
    PERFORM tock.check_worker_lease(p_worker, p_lease_token);
    -- A worker may reach a promoted standby before any scheduler: its lock counts from the new timeline's start.
    PERFORM tock.note_timeline(now());
    v_locked := pg_try_advisory_lock(tock.worker_lock_key(), p_worker::int);
    IF v_locked THEN
        -- A pid may recur after a restart: the lock's time tells this session's lock from a lost one's.
        UPDATE tock.workers SET session_locked = true, session_pid = pg_backend_pid(), session_since = now()
        WHERE id = p_worker AND (NOT session_locked OR session_pid IS DISTINCT FROM pg_backend_pid()
                                 OR session_since IS NULL OR session_since < tock.server_started_at());
    END IF;
    RETURN v_locked;
END $$;
COMMENT ON FUNCTION tock.hold_worker_session(bigint, text) IS
    'Takes worker p_worker''s session lock for the calling session''s lifetime (tock.rescue() watches it).';

-- Held by the session that took it for the worker (hold_worker_session records its pid): any login may take an
-- advisory lock, and another's would keep a dead worker looking alive.
CREATE OR REPLACE FUNCTION tock.worker_session_alive(p_worker bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2
          AND classid = tock.worker_lock_key()::oid AND objid = p_worker::oid
          AND pid = (SELECT w.session_pid FROM tock.workers w WHERE w.id = p_worker)
          -- Advisory locks are per database, pg_locks is the whole server's: worker 1 of another Tock database
          -- must not keep this one's worker 1 alive.
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
$$;

-- Finds dead workers and recovers their runs. A worker is dead when its session lock is gone and it has not
-- heartbeaten for p_lost_after (a kill -9: seconds), or it has not heartbeaten for p_silent_after whatever its
-- session says (a hung or partitioned process). The lock counts once the worker has held it since the server's
-- current run began (session_since, tock.server_started_at): a restart or crash recovery ends every session, and
-- recovery can outlast p_lost_after, so a worker still reconnecting is judged by its heartbeats until it holds its
-- lock again. Heartbeat age counts from then at the earliest, so a database restart does not condemn workers that
-- are busy reconnecting. Their runs end 'failed' (worker lost) and are retried at once while attempts remain,
-- else end 'dead'.
-- Then the runs still running p_orphaned_after past their timeout (timeout_at, fixed at the claim), whatever their
-- worker: a worker stops a script at its timeout and reports it, so such a run is one its worker lost track of (a
-- report it gave up on).
-- Left alone it would stay running for good, and an overlap 'skip' job would never run again. They end 'failed'
-- the same way. The margin covers a report delayed by an outage; a late report after it is ignored.
-- Safe to run from anywhere, at any time. Returns how many runs it recovered.
DROP FUNCTION IF EXISTS tock.rescue(timestamptz, interval, interval);
CREATE OR REPLACE FUNCTION tock.rescue(
    p_now timestamptz DEFAULT now(), p_lost_after interval DEFAULT '2 seconds',
    p_silent_after interval DEFAULT '30 seconds', p_orphaned_after interval DEFAULT '10 minutes')
RETURNS int LANGUAGE plpgsql
-- Every scheduler calls it each second: its walk of the runs in flight must never become a scan of the history,
-- whatever the statistics say (see tock.tick).
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_worker record;
    v_run record;
    v_count int := 0;
    v_started timestamptz;
BEGIN
    p_now := tock.checked_now(p_now);
    PERFORM tock.note_timeline(p_now);
    v_started := tock.server_started_at();
    -- Below these, live workers and their runs would be taken for dead (a tock_admin member passing '-1 hour'
    -- stopped every worker). Tests, as the owner, may go lower.
    IF (p_lost_after IS NULL OR p_lost_after < interval '2 seconds' OR p_silent_after IS NULL
        OR p_silent_after < interval '10 seconds' OR p_orphaned_after IS NULL OR p_orphaned_after < interval '1 minute')
       AND NOT tock.caller_owns_schema() THEN
        PERFORM tock.raise_invalid('rescue', format('lost after %s, silent after %s, orphaned after %s: the least are 2 s, 10 s and 1 min',
                                                    p_lost_after, p_silent_after, p_orphaned_after));
    END IF;
    FOR v_worker IN
        SELECT w.id, w.name,
               CASE WHEN NOT w.session_locked OR w.session_since IS NULL OR w.session_since < v_started
                         OR tock.worker_session_alive(w.id) THEN 'stopped heartbeating'
                    ELSE 'its database session ended' END AS reason
        FROM tock.workers w
        WHERE w.state IN ('running', 'stopping')
          AND (p_now - greatest(w.last_heartbeat_at, v_started) > p_silent_after
               OR (w.session_locked AND w.session_since >= v_started
                   AND p_now - greatest(w.last_heartbeat_at, v_started) > p_lost_after
                   AND NOT tock.worker_session_alive(w.id)))
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE tock.workers SET state = 'lost', stopped_at = p_now WHERE id = v_worker.id;
        v_count := v_count + tock.fail_over_leases(v_worker.id, format('worker %s was lost (%s)', v_worker.name,
                                                                         v_worker.reason), p_now);
    END LOOP;
    -- Every running run has a lease: a walk of the running runs, never of the pending ones. By id (see
    -- tock.heartbeat), and the job and worker as subqueries, not joins: a join of tock.runs to the jobs was planned,
    -- on the statistics of an empty queue, as a walk of every run in flight in job order.
    FOR v_run IN
        SELECT r.id, r.worker_id,
               coalesce((SELECT w.name FROM tock.workers w WHERE w.id = r.worker_id), '#' || r.worker_id) AS worker,
               coalesce(r.timeout_at - r.started_at, (SELECT j.timeout FROM tock.jobs j WHERE j.id = r.job_id)) AS timeout
        FROM tock.runs r
        WHERE r.id = ANY (ARRAY(SELECT l.run_id FROM tock.run_leases l)) AND r.status = 'running'
          AND r.worker_id IS NOT NULL
          AND coalesce(r.timeout_at, r.started_at + (SELECT j.timeout FROM tock.jobs j WHERE j.id = r.job_id))
              + p_orphaned_after < p_now
        FOR UPDATE OF r SKIP LOCKED
    LOOP
        IF tock.end_attempt(v_run.id, v_run.worker_id, 'failed', NULL,
                            format('still running %s past its timeout of %s: worker %s never reported how it ended',
                                   p_orphaned_after, v_run.timeout, v_run.worker), p_now,
                            p_retry_now => true) THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    -- Scheduled runs not started in time, for the late hooks.
    IF EXISTS (SELECT 1 FROM tock.hooks WHERE event = 'late') THEN
        PERFORM tock.enqueue_late_hooks(p_now);
    END IF;
    RETURN v_count;
END $$;
COMMENT ON FUNCTION tock.rescue(timestamptz, interval, interval, interval) IS
    'Marks dead workers lost and retries (or buries) their runs, and the runs left running long past their timeout; returns the number recovered.';

-- The earliest run_after of the pending runs of pool p_pool that are due at p_now (p_due) or not yet due. NULL:
-- none. A loose index scan of runs_claim_idx, which is ordered by pool and priority first: one seek for each
-- priority that has pending runs in the pool (at most 101), then one for its earliest run of the kind asked for. A
-- plain min(run_after) reads every pending run (many, when retries wait out their backoff), where this takes a few
-- index seeks. Each branch keeps its own bound on run_after, so the seek starts there rather than walking a
-- priority's other runs.
-- run_after >= '-infinity' (always true) implies runs_claim_idx's predicate (migration 0014). Not "run_after IS NOT
-- NULL": PostgreSQL 17 drops that from a query as redundant on a NOT NULL column, before it looks for the partial
-- indexes the query may use.
CREATE OR REPLACE FUNCTION tock.earliest_pending_in(p_due boolean, p_now timestamptz, p_pool text)
RETURNS timestamptz LANGUAGE plpgsql STABLE
-- Seeks in runs_claim_idx's order, never a bitmap of a priority's runs sorted for the first: on the statistics of
-- a queue analyzed empty and then vacuumed, the planner took that for cheap and read all 20,000 pending runs.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off
AS $$
DECLARE
    v_priority smallint;
    v_earliest timestamptz;
BEGIN
    v_priority := (SELECT priority FROM tock.runs
                   WHERE pool = p_pool AND status = 'pending' AND run_after >= '-infinity'
                   ORDER BY priority DESC LIMIT 1);
    WHILE v_priority IS NOT NULL LOOP
        -- least() ignores NULL: a priority without runs of the kind asked for adds nothing.
        v_earliest := least(v_earliest, CASE WHEN p_due
            THEN (SELECT run_after FROM tock.runs
                  WHERE pool = p_pool AND status = 'pending' AND priority = v_priority AND run_after <= p_now
                  ORDER BY run_after LIMIT 1)
            ELSE (SELECT run_after FROM tock.runs
                  WHERE pool = p_pool AND status = 'pending' AND priority = v_priority AND run_after > p_now
                  ORDER BY run_after LIMIT 1)
            END);
        v_priority := (SELECT priority FROM tock.runs
                       WHERE pool = p_pool AND status = 'pending' AND priority < v_priority AND run_after >= '-infinity'
                       ORDER BY priority DESC LIMIT 1);
    END LOOP;
    RETURN v_earliest;
END $$;

-- tock.earliest_pending_in over the pools p_pools (a worker's: only theirs are looked into), or over every pool
-- that has runs in flight (NULL: a loose scan of runs_claim_idx's pools).
DROP FUNCTION IF EXISTS tock.earliest_pending(boolean, timestamptz);
CREATE OR REPLACE FUNCTION tock.earliest_pending(p_due boolean, p_now timestamptz, p_pools text[] DEFAULT NULL)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off
AS $$
DECLARE
    v_pool text;
    v_earliest timestamptz;
BEGIN
    IF p_pools IS NOT NULL THEN
        FOREACH v_pool IN ARRAY p_pools LOOP
            v_earliest := least(v_earliest, tock.earliest_pending_in(p_due, p_now, v_pool));
        END LOOP;
        RETURN v_earliest;
    END IF;
    v_pool := (SELECT pool FROM tock.runs WHERE run_after >= '-infinity' ORDER BY pool LIMIT 1);
    WHILE v_pool IS NOT NULL LOOP
        v_earliest := least(v_earliest, tock.earliest_pending_in(p_due, p_now, v_pool));
        v_pool := (SELECT pool FROM tock.runs WHERE pool > v_pool AND run_after >= '-infinity' ORDER BY pool LIMIT 1);
    END LOOP;
    RETURN v_earliest;
END $$;

-- When the earliest delayed run (a retry's backoff) becomes claimable, so an idle worker sleeps until then
-- rather than until its safety sweep; it asks after each claim. NULL: none.
-- PL/pgSQL, like the other functions a process calls over and over (see tock.heartbeat).
-- With p_worker, in the pools it serves only.
DROP FUNCTION IF EXISTS tock.next_delayed_run(timestamptz);
CREATE OR REPLACE FUNCTION tock.next_delayed_run(p_now timestamptz DEFAULT now(), p_worker bigint DEFAULT NULL)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
    -- With a worker, also when one of its pools' rate limits next has room: nothing else wakes it for that.
    RETURN least(tock.earliest_pending(false, p_now, (SELECT w.pools FROM tock.workers w WHERE w.id = p_worker)),
                 tock.next_rate_room((SELECT w.pools FROM tock.workers w WHERE w.id = p_worker), p_now));
END $$;
COMMENT ON FUNCTION tock.next_delayed_run(timestamptz, bigint) IS
    'When the first pending run of the worker''s pools that is not yet due comes due (or a rate limit has room); NULL: none.';
