-- 0027_run_counts: how many runs ended in each minute, by status, kept as they end; and an index of the failures by
-- finish time. A count over a span (tock.stats' 24 hours, tock.activity's chart) then reads a row per minute and
-- status, and the failures page reads the span's failures, instead of every run the span holds.
--
-- Statement triggers on tock.finished_runs keep the counts: every way into the history (tock.end_runs, a DBA's
-- INSERT) and out of it (a bulk delete, a job's deletion, TRUNCATE) is counted, once per statement. They live here,
-- not in a functions file, because they must start in the transaction that makes the first count: it holds
-- finishes back (SHARE ROW EXCLUSIVE) so that no run that ends meanwhile is missed or counted twice.
-- Each server process counts into rows of its own (backend: its pid), so two finishes at once never wait for one
-- row nor deadlock on two; the scheduler's maintenance merges closed minutes into backend 0 and forgets minutes
-- past the retention (tock.purge_history). Moving runs between partitions (tock.add_history_partitions reads and
-- writes the partitions, not tock.finished_runs) fires no trigger and changes no count; dropping a partition leaves
-- its minutes' counts, which are past the retention and are forgotten with it.

SET LOCAL lock_timeout = '30s';
LOCK TABLE tock.finished_runs IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE IF NOT EXISTS tock.run_counts (
    minute  timestamptz NOT NULL,  -- the minute the runs ended in (tock.minute_of: whole UTC minutes)
    status  text NOT NULL,
    backend int NOT NULL,          -- the server process (pg_backend_pid) that counted them; 0 once merged
    runs    bigint NOT NULL,       -- one process's row is negative when it deleted runs another counted
    PRIMARY KEY (minute, status, backend)
);
COMMENT ON TABLE tock.run_counts IS
    'Runs that ended per minute and status (sum over backend), kept by triggers on tock.finished_runs; read tock.ended_counts.';

-- The minute a time falls in, whatever the session's time zone (date_trunc would follow it).
CREATE OR REPLACE FUNCTION tock.minute_of(p_at timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.date_bin('1 minute', p_at, timestamptz '2000-01-01 00:00+00')
$$;

CREATE OR REPLACE FUNCTION tock.tg_finished_runs__count()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM tock.run_counts;
        RETURN NULL;
    END IF;
    -- In key order, so that two statements of one process never lock its rows in opposite orders.
    INSERT INTO tock.run_counts AS c (minute, status, backend, runs)
    SELECT tock.minute_of(x.finished_at), x.status, pg_catalog.pg_backend_pid(),
           CASE WHEN TG_OP = 'INSERT' THEN count(*) ELSE -count(*) END
    FROM changed x
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (minute, status, backend) DO UPDATE SET runs = c.runs + excluded.runs;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS finished_runs_count_inserted ON tock.finished_runs;
CREATE TRIGGER finished_runs_count_inserted
    AFTER INSERT ON tock.finished_runs REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_finished_runs__count();
DROP TRIGGER IF EXISTS finished_runs_count_deleted ON tock.finished_runs;
CREATE TRIGGER finished_runs_count_deleted
    AFTER DELETE ON tock.finished_runs REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_finished_runs__count();
DROP TRIGGER IF EXISTS finished_runs_count_truncated ON tock.finished_runs;
CREATE TRIGGER finished_runs_count_truncated
    AFTER TRUNCATE ON tock.finished_runs
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_finished_runs__count();

-- Counts the history again from its rows: after a change the triggers do not see (an UPDATE of a finish time or
-- status, a TRUNCATE of one partition). Holds finishes back while it counts. Returns the runs counted.
CREATE OR REPLACE FUNCTION tock.recount_runs()
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_runs bigint;
BEGIN
    LOCK TABLE tock.finished_runs IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM tock.run_counts;
    INSERT INTO tock.run_counts (minute, status, backend, runs)
    SELECT tock.minute_of(r.finished_at), r.status, 0, count(*) FROM tock.finished_runs r GROUP BY 1, 2;
    SELECT coalesce(sum(c.runs), 0) INTO v_runs FROM tock.run_counts c;
    RETURN v_runs;
END $$;
COMMENT ON FUNCTION tock.recount_runs() IS
    'Counts tock.finished_runs into tock.run_counts again (after an UPDATE or partition TRUNCATE the triggers miss).';

SELECT tock.recount_runs();

-- The runs that failed, timed out or died by finish time, with what the failures page groups them by: the page
-- reads its span's failures from this alone, not the span's runs.
CREATE INDEX IF NOT EXISTS finished_runs_failures_idx ON tock.finished_runs (finished_at) INCLUDE (job_id, status, id)
    WHERE status IN ('failed', 'timed_out', 'dead');
