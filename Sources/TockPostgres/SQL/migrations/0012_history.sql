-- 0012_history: runs in flight in a narrow table of their own, finished runs in a history partitioned by finish
-- time, retention by dropping partitions. Forward-only.
--
-- Before, every run, pending, running or finished, lived in tock.runs with partial indexes on its status, so
-- neither update of a run (the claim, the finish) could be HOT, the queue's indexes grew with years of history, and
-- retention deleted rows in batches (bloat, vacuum debt). Now:
--   tock.runs           pending and running runs only. No index names a column a claim changes (status,
--                       started_at, worker_id, timeout_at, cancel_requested_at), so a claim is a HOT update; the
--                       fillfactor leaves each page room for it. A finish deletes the row.
--   tock.run_leases     which worker holds which running run: the index of running runs by worker, kept apart so
--                       that indexing them costs the claim one small insert, not a non-HOT update of the run.
--   tock.finished_runs  every run that ended, with its output, range-partitioned on finished_at; the finish moves
--                       the run here in its own transaction. Partitions are created ahead and dropped whole by
--                       tock.maintain_history (60_operations.sql).
--   tock.run_output     the output of runs still running (what their workers sent so far).
--
-- Online: the history is copied while workers go on claiming and finishing; then tock.runs is locked against
-- writes (reads go on) while the runs that ended during the copy follow and the runs in flight move to the new
-- table; the old table is dropped. The lock lasts as long as moving the runs in flight takes, not the history. The
-- views and functions are re-created by the functions step that follows every migration; in between, a client
-- reading a view gets "relation does not exist", never a wrong answer.

SET LOCAL lock_timeout = '30s';

-- How wide new history partitions are (tock.set_history_retention picks it from the retention), and retention may
-- now be as short as a minute: dropping a partition costs the same whatever it holds.
ALTER TABLE tock.config
    ADD COLUMN IF NOT EXISTS history_partition interval NOT NULL DEFAULT '1 day',
    DROP CONSTRAINT IF EXISTS config_history_retention_is_at_least_an_hour,
    DROP CONSTRAINT IF EXISTS config_history_retention_is_at_least_a_minute,
    DROP CONSTRAINT IF EXISTS config_history_partition_is_known,
    ADD CONSTRAINT config_history_retention_is_at_least_a_minute CHECK (history_retention >= interval '1 minute'),
    ADD CONSTRAINT config_history_partition_is_known
        CHECK (history_partition IN (interval '1 minute', interval '1 hour', interval '1 day', interval '7 days'));
COMMENT ON COLUMN tock.config.history_partition IS
    'Width of new partitions of tock.finished_runs; tock.set_history_retention sets it from the retention.';

-- At most a quarter of the retention, so that the runs past it (not shown, tock.run_history) that wait for their
-- partition to be dropped are at most a quarter more than those shown; at most a week, so that a year of history is
-- 52 partitions and a lookup by run id probes no more.
CREATE OR REPLACE FUNCTION tock.history_partition_width(p_retention interval)
RETURNS interval LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_retention >= interval '90 days' THEN interval '7 days'
                WHEN p_retention >= interval '4 days' THEN interval '1 day'
                WHEN p_retention >= interval '4 hours' THEN interval '1 hour'
                ELSE interval '1 minute' END
$$;
UPDATE tock.config SET history_partition = tock.history_partition_width(history_retention);

CREATE TABLE tock.finished_runs (
    id                  bigint NOT NULL,
    job_id              bigint NOT NULL,
    trigger             text NOT NULL,
    status              text NOT NULL,
    priority            smallint NOT NULL,
    attempt             int NOT NULL,
    first_run_id        bigint,
    scheduled_for       timestamptz,
    enqueued_at         timestamptz NOT NULL,
    run_after           timestamptz NOT NULL,
    started_at          timestamptz,
    finished_at         timestamptz NOT NULL,
    worker_id           bigint,
    exit_code           int,
    error               text,
    cancel_requested_at timestamptz,
    timeout_at          timestamptz,
    output              text,                            -- NULL: the run printed nothing
    output_bytes        bigint NOT NULL DEFAULT 0,        -- how many bytes the script wrote in all
    output_truncated    boolean NOT NULL DEFAULT false,
    CONSTRAINT finished_runs_status_is_final CHECK (status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'dead'))
) PARTITION BY RANGE (finished_at);
COMMENT ON TABLE tock.finished_runs IS
    'Every run that ended, with its output, partitioned by finish time; read tock.run_history and tock.run_logs.';
-- A run by id (one probe per partition; ids are unique because only tock.runs hands them out), a job's runs newest
-- first, the runs that ended in a time range by status (index-only), the dead letters.
CREATE INDEX finished_runs_id_idx ON tock.finished_runs (id);
CREATE INDEX finished_runs_job_idx ON tock.finished_runs (job_id, id DESC);
CREATE INDEX finished_runs_finished_idx ON tock.finished_runs (finished_at) INCLUDE (status);
CREATE INDEX finished_runs_dead_idx ON tock.finished_runs (finished_at) WHERE status = 'dead';

-- A run whose finish time no partition covers (a clock moved by a test, a maintenance that has not run for longer
-- than its lookahead) still finishes: it lands here, and tock.maintain_history deletes it once it is past the
-- retention. Normally empty.
CREATE TABLE tock.finished_runs_default PARTITION OF tock.finished_runs DEFAULT;

-- The history moved from tock.runs goes into one partition, from the beginning of time to two days ahead; the
-- scheduler's maintenance adds partitions from there on and drops this one when its newest run is past retention.
DO $$
DECLARE
    v_upto constant timestamptz := date_bin('1 day', now(), timestamptz '2000-01-03 00:00+00') + interval '2 days';
BEGIN
    EXECUTE format('CREATE TABLE tock.%I PARTITION OF tock.finished_runs FOR VALUES FROM (MINVALUE) TO (%L)',
                   'finished_runs_until_' || to_char(v_upto AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI'), v_upto);
END $$;

-- Every run that has ended, with its output, as tock.finished_runs holds it.
CREATE TEMPORARY VIEW finished_before_0012 AS
SELECT r.id, r.job_id, r.trigger, r.status, r.priority, r.attempt, r.first_run_id, r.scheduled_for, r.enqueued_at,
       r.run_after, r.started_at, r.finished_at, r.worker_id, r.exit_code, r.error, r.cancel_requested_at,
       r.timeout_at, o.output, coalesce(o.bytes_total, 0) AS output_bytes, coalesce(o.truncated, false) AS output_truncated
FROM tock.runs r
LEFT JOIN tock.run_output o ON o.run_id = r.id
WHERE r.finished_at IS NOT NULL;

-- The copy, while workers go on.
INSERT INTO tock.finished_runs SELECT * FROM finished_before_0012;
-- Statistics before the lock: planned for an empty table, the catch-up below hashed the whole history (4.7 s of
-- blocked enqueues with 5,000,000 runs, bench/migrate-history).
ANALYZE tock.finished_runs;

-- From here on no run changes until this transaction commits: claims, finishes and enqueues wait (reads do not).
LOCK TABLE tock.runs, tock.run_output IN EXCLUSIVE MODE;

-- The runs that ended while the copy ran. A finish's time is its caller's clock, within 10 seconds of the
-- database's (tock.checked_now), so every one of them ended after this transaction began less that margin.
INSERT INTO tock.finished_runs
SELECT * FROM finished_before_0012 v
WHERE v.finished_at >= now() - interval '1 minute'
  AND NOT EXISTS (SELECT 1 FROM tock.finished_runs f WHERE f.id = v.id AND f.finished_at = v.finished_at);
DROP VIEW finished_before_0012;

CREATE TABLE tock.runs_in_flight (
    id                  bigint GENERATED ALWAYS AS IDENTITY,
    job_id              bigint NOT NULL,
    trigger             text NOT NULL,
    status              text NOT NULL DEFAULT 'pending',
    priority            smallint NOT NULL DEFAULT 50,   -- copied from the job so one index orders the claim
    attempt             int NOT NULL DEFAULT 1,
    first_run_id        bigint,                         -- retries point at attempt 1 (which may have ended)
    scheduled_for       timestamptz,                    -- the fire time, for schedule runs
    enqueued_at         timestamptz NOT NULL DEFAULT now(),
    run_after           timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    worker_id           bigint,
    timeout_at          timestamptz,
    cancel_requested_at timestamptz,
    CONSTRAINT runs_in_flight_pkey PRIMARY KEY (id),
    CONSTRAINT runs_trigger_is_known CHECK (trigger IN ('schedule', 'manual', 'sql', 'api', 'retry')),
    CONSTRAINT runs_status_is_in_flight CHECK (status IN ('pending', 'running')),
    CONSTRAINT runs_attempt_is_positive CHECK (attempt >= 1),
    CONSTRAINT runs_running_has_started CHECK (status <> 'running' OR started_at IS NOT NULL),
    CONSTRAINT runs_schedule_has_fire_time CHECK (trigger <> 'schedule' OR scheduled_for IS NOT NULL)
) WITH (fillfactor = 50);

INSERT INTO tock.runs_in_flight (id, job_id, trigger, status, priority, attempt, first_run_id, scheduled_for,
                                 enqueued_at, run_after, started_at, worker_id, timeout_at, cancel_requested_at)
OVERRIDING SYSTEM VALUE
SELECT id, job_id, trigger, status, priority, attempt, first_run_id, scheduled_for, enqueued_at, run_after,
       started_at, worker_id, timeout_at, cancel_requested_at
FROM tock.runs WHERE status IN ('pending', 'running');
ANALYZE tock.runs_in_flight;
-- Ids go on from where the old table's left off: a run's id is never reused, in flight or in the history.
SELECT setval(pg_get_serial_sequence('tock.runs_in_flight', 'id'), nextval(pg_get_serial_sequence('tock.runs', 'id')));

CREATE TABLE tock.run_leases (
    worker_id bigint NOT NULL,
    run_id    bigint NOT NULL,
    CONSTRAINT run_leases_pkey PRIMARY KEY (worker_id, run_id)
);
COMMENT ON TABLE tock.run_leases IS
    'Which worker holds which running run: written by tock.claim_runs, removed by the run''s finish or requeue.';
INSERT INTO tock.run_leases (worker_id, run_id)
SELECT worker_id, id FROM tock.runs_in_flight WHERE status = 'running' AND worker_id IS NOT NULL;

CREATE TABLE tock.run_output_in_flight (
    run_id      bigint PRIMARY KEY,
    output      text NOT NULL DEFAULT '',   -- stdout and stderr interleaved, the last bytes up to the worker's cap
    bytes_total bigint NOT NULL DEFAULT 0,  -- how many bytes the script wrote in all
    truncated   boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tock.run_output_in_flight (run_id, output, bytes_total, truncated, updated_at)
SELECT o.run_id, o.output, o.bytes_total, o.truncated, o.updated_at
FROM tock.runs_in_flight r JOIN tock.run_output o ON o.run_id = r.id;

-- The views (and the functions returning their rows) name the old tables; the functions step re-creates them all,
-- with their grants (90_privileges.sql).
DROP VIEW IF EXISTS tock.job_overview, tock.run_history, tock.worker_overview, tock.lag, tock.queue_depth,
    tock.stuck_runs, tock.run_logs, tock.job_stats CASCADE;
DROP TABLE tock.runs, tock.run_output;

ALTER TABLE tock.runs_in_flight RENAME TO runs;
ALTER TABLE tock.runs RENAME CONSTRAINT runs_in_flight_pkey TO runs_pkey;
ALTER TABLE tock.run_output_in_flight RENAME TO run_output;
ALTER TABLE tock.run_output RENAME CONSTRAINT run_output_in_flight_pkey TO run_output_pkey;
COMMENT ON TABLE tock.runs IS
    'Runs in flight (pending, running). Change a run only through the tock.* functions; read tock.run_history.';
COMMENT ON TABLE tock.run_output IS 'What each running run has printed so far; a finished run''s output is in tock.finished_runs.';

-- The only indexes of the runs in flight; none names a column a claim changes.
--   runs_claim_idx          tock.claim_runs' order: highest priority first, then oldest. Running runs are in it
--                           too (a partial index on status would make the claim's update non-HOT): a claim steps
--                           over the running runs ahead of the first pending one, at most the workers' slots.
--   runs_job_idx            a job's runs in flight, oldest first (overlap probes, a job's pending runs).
--   runs_one_per_fire_time  each fire time of a job yields at most one scheduled run in flight.
CREATE INDEX runs_claim_idx ON tock.runs (priority DESC, run_after, id);
CREATE INDEX runs_job_idx ON tock.runs (job_id, id);
CREATE UNIQUE INDEX runs_one_per_fire_time ON tock.runs (job_id, scheduled_for) WHERE trigger = 'schedule';
