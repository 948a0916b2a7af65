-- Pages of jobs and runs, as the API, the CLI and the portal read them: a psql user gets the same plans.
--
-- These, and the other reads the portal and /metrics repeat (tock.stats, tock.gauges, find_runs, count_runs,
-- failure_groups, activity, audit_page), are never JIT-compiled (SET jit = off), for the reason 30_runs.sql gives
-- for the workers' calls: over a long history or a deep queue their estimates pass jit_above_cost, and compiling
-- then costs a call more than its work (most of tock.gauges' time).

-- Jobs in name order: p_after pages on (names sorting after it), p_search keeps names containing it
-- (case-insensitive, taken literally), p_limit NULL is every job. The page is chosen from the index on jobs.name
-- alone (an index-only scan, even when the search reads every name), and only its jobs go through the view's
-- per-job lookups: the view is read per name of the page (LATERAL), planned for the values given (EXECUTE … USING).
-- Joined to the page by IN, or planned for any p_limit, the plan read and sorted every job of the view to merge them
-- with the page, whose cost grew with the number of jobs.
CREATE OR REPLACE FUNCTION tock.list_jobs(p_after text DEFAULT NULL, p_search text DEFAULT NULL, p_limit int DEFAULT NULL)
RETURNS SETOF tock.job_overview LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    RETURN QUERY EXECUTE '
        SELECT v.* FROM (SELECT j.name FROM tock.jobs j
                         WHERE ($1 IS NULL OR j.name > $1)
                           AND ($2 IS NULL OR pg_catalog.strpos(pg_catalog.lower(j.name), pg_catalog.lower($2)) > 0)
                         ORDER BY j.name LIMIT $3) page
        CROSS JOIN LATERAL (SELECT * FROM tock.job_overview o WHERE o.name = page.name) v
        ORDER BY page.name'
    USING p_after, p_search, p_limit;
END $$;
COMMENT ON FUNCTION tock.list_jobs(text, text, int) IS
    'Jobs in name order from tock.job_overview: after a name (paging), whose names contain a text, at most p_limit.';

-- Runs of every job, newest first: p_status keeps one status, p_before pages on (ids below it). The page is the
-- newest of each half's newest (in flight, finished), each a backward walk of its id index: over the union as a
-- whole, the planner walked the history by finish time instead (every run of the retention, then a sort). Planned
-- for the values given, as a statement from a client is (EXECUTE … USING): a plan for any value would walk the
-- whole id index from the top for a page in the middle of a long history.
CREATE OR REPLACE FUNCTION tock.recent_runs(p_status text DEFAULT NULL, p_before bigint DEFAULT NULL, p_limit int DEFAULT 50)
RETURNS SETOF tock.run_history LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    RETURN QUERY EXECUTE '
        SELECT v.* FROM (
            (SELECT * FROM tock.run_history_finished v
             WHERE ($1 IS NULL OR v.status = $1) AND ($2 IS NULL OR v.id < $2)
             ORDER BY v.id DESC LIMIT least($3, 1000))
            UNION ALL
            (SELECT * FROM tock.run_history_in_flight v
             WHERE ($1 IS NULL OR v.status = $1) AND ($2 IS NULL OR v.id < $2)
             ORDER BY v.id DESC LIMIT least($3, 1000))
        ) v
        ORDER BY v.id DESC LIMIT least($3, 1000)'
    USING p_status, p_before, p_limit;
END $$;
COMMENT ON FUNCTION tock.recent_runs(text, bigint, int) IS
    'Runs of every job from tock.run_history, newest first: of one status, with ids below p_before (paging), at most p_limit (1000).';

-- One job's runs, newest first. They are in two tables, in flight and finished, neither holding them all: the page
-- is the newest of each one's newest, two short backward walks of their job indexes. Planned for the values given,
-- as tock.recent_runs is.
CREATE OR REPLACE FUNCTION tock.job_runs(p_job text, p_status text DEFAULT NULL, p_before bigint DEFAULT NULL,
                                         p_limit int DEFAULT 50)
RETURNS SETOF tock.run_history LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    RETURN QUERY EXECUTE '
        SELECT v.* FROM (
            (SELECT * FROM tock.run_history_finished v
             WHERE v.job_id = $1 AND ($2 IS NULL OR v.status = $2) AND ($3 IS NULL OR v.id < $3)
             ORDER BY v.id DESC LIMIT least($4, 1000))
            UNION ALL
            (SELECT * FROM tock.run_history_in_flight v
             WHERE v.job_id = $1 AND ($2 IS NULL OR v.status = $2) AND ($3 IS NULL OR v.id < $3)
             ORDER BY v.id DESC LIMIT least($4, 1000))
        ) v
        ORDER BY v.id DESC LIMIT least($4, 1000)'
    USING tock.find_job(p_job), p_status, p_before, p_limit;
END $$;
COMMENT ON FUNCTION tock.job_runs(text, text, bigint, int) IS
    'One job''s runs (by name or id) from tock.run_history, newest first: of one status, with ids below p_before (paging), at most p_limit (1000).';

-- One run with its output: a finished run that printed nothing has no output row, so its output is empty, not
-- unknown; a run still running shows what its worker has sent so far. A pending run of a pool no live worker
-- serves names that pool (waiting_for_pool): it waits for a worker, not for its turn.
-- PL/pgSQL for its plan cache: the union of the two halves and the partitions costs a few milliseconds to plan,
-- more than the lookup itself.
CREATE OR REPLACE FUNCTION tock.run_detail(p_run bigint, p_with_output boolean DEFAULT true)
RETURNS jsonb LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    RETURN (
        SELECT to_jsonb(v) || jsonb_build_object('output',
                   CASE WHEN p_with_output THEN coalesce((SELECT o.output FROM tock.run_logs o WHERE o.run_id = v.id),
                                                        CASE WHEN v.finished_at IS NOT NULL THEN '' END) END,
                   'waiting_for_pool',
                   CASE WHEN v.status = 'pending' AND tock.workers_serving(v.pool) = 0 THEN v.pool END)
        FROM tock.run_history v WHERE v.id = p_run);
END $$;
COMMENT ON FUNCTION tock.run_detail(bigint, boolean) IS
    'One run of tock.run_history as JSON, with its output (the last bytes kept) and, pending in a pool no live worker serves, waiting_for_pool; NULL for an unknown run.';
