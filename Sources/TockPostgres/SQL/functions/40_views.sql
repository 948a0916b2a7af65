-- Views: what the CLI, the API and psql users read. Columns are only ever appended (CREATE OR REPLACE VIEW).

CREATE OR REPLACE VIEW tock.job_overview AS
SELECT
    j.id,
    j.name,
    j.script,
    j.args,
    j.schedule,
    j.schedule_description,
    j.timezone,
    j.enabled,
    CASE WHEN j.enabled THEN 'enabled' ELSE 'paused' END AS state,
    j.priority,
    extract(epoch FROM j.timeout)::float8 AS timeout_seconds,
    j.max_attempts,
    j.overlap,
    j.next_run_at,
    last.id AS last_run_id,
    last.status AS last_run_status,
    last.enqueued_at AS last_run_enqueued_at,
    last.started_at AS last_run_started_at,
    last.finished_at AS last_run_finished_at,
    active.running,
    active.pending,
    j.created_at,
    j.updated_at,
    j.misfire,
    extract(epoch FROM j.retry_base)::float8 AS retry_base_seconds,
    extract(epoch FROM j.retry_cap)::float8 AS retry_cap_seconds,
    j.pool,
    j.max_running,
    tock.rate_text(j.rate_limit, j.rate_period) AS rate,
    j.inherits AS inherited,
    j.params,
    j.description,
    j.env,
    j.secrets,
    j.http
FROM tock.jobs j
-- A job's newest run is the newer of its newest in flight (runs_job_idx) and its newest finished run still within the
-- retention (finished_runs_job_idx of each partition the retention keeps): two short index probes.
LEFT JOIN LATERAL (
    SELECT x.id, x.status, x.enqueued_at, x.started_at, x.finished_at FROM (
        (SELECT r.id, r.status, r.enqueued_at, r.started_at, NULL::timestamptz AS finished_at
         FROM tock.runs r WHERE r.job_id = j.id ORDER BY r.id DESC LIMIT 1)
        UNION ALL
        (SELECT f.id, f.status, f.enqueued_at, f.started_at, f.finished_at
         FROM tock.finished_runs f
         WHERE f.job_id = j.id AND f.finished_at >= now() - (SELECT c.history_retention FROM tock.config c)
         ORDER BY f.id DESC LIMIT 1)
    ) x
    ORDER BY x.id DESC LIMIT 1
) last ON true
-- Every run in tock.runs is in flight, and every running one has a lease: the runs in flight are counted from
-- runs_job_idx alone (an index-only scan once vacuum has marked the pages visible), the running ones through the
-- job's leases (run_leases_job_idx, then each leased run by its id, status checked so that a lease left behind
-- could not count a run twice), and pending is the rest: a running run with no lease would count as pending.
-- Counting them by status read every run in flight's row, since no index of tock.runs may name its status (claims
-- stay HOT). No predicate on the run's job beside its id: runs_job_idx would then qualify, and on the statistics of
-- an empty queue the planner walks a job's whole index instead of probing the leased ids.
CROSS JOIN LATERAL (
    SELECT leased.running, in_flight.runs - leased.running AS pending
    FROM (SELECT count(*) AS runs FROM tock.runs a WHERE a.job_id = j.id) in_flight,
         (SELECT count(*) AS running FROM tock.runs r
          WHERE r.id = ANY (ARRAY(SELECT l.run_id FROM tock.run_leases l WHERE l.job_id = j.id))
            AND r.status = 'running') leased
) active;
COMMENT ON VIEW tock.job_overview IS 'Every job: schedule in words, next run, last run and its status, runs in flight.';

-- tock.run_history's two halves, with the same columns: the runs in flight (with the size of what they printed so
-- far) and those that ended within the retention. Pages of a job's runs read each half by its own indexes
-- (tock.job_runs); the retention holds to the second here, whatever the partitions' width: a run past it is not
-- shown, though its partition is dropped only once every run in it is past it (tock.purge_history).
CREATE OR REPLACE VIEW tock.run_history_in_flight AS
SELECT
    r.id,
    r.job_id,
    j.name AS job_name,
    r.trigger,
    r.status,
    r.attempt,
    r.first_run_id,
    r.priority,
    r.scheduled_for,
    r.enqueued_at,
    r.run_after,
    r.started_at,
    NULL::timestamptz AS finished_at,
    NULL::float8 AS duration_seconds,
    r.worker_id,
    w.name AS worker_name,
    NULL::int AS exit_code,
    NULL::text AS error,
    o.bytes_total AS output_bytes,
    o.truncated AS output_truncated,
    r.cancel_requested_at,
    r.pool,
    r.params,
    r.upstream,
    NULL::bigint AS retried_by
FROM tock.runs r
JOIN tock.jobs j ON j.id = r.job_id
LEFT JOIN tock.workers w ON w.id = r.worker_id
LEFT JOIN tock.run_output o ON o.run_id = r.id;
COMMENT ON VIEW tock.run_history_in_flight IS 'tock.run_history''s runs in flight (pending, running).';

CREATE OR REPLACE VIEW tock.run_history_finished AS
SELECT
    r.id,
    r.job_id,
    j.name AS job_name,
    r.trigger,
    r.status,
    r.attempt,
    r.first_run_id,
    r.priority,
    r.scheduled_for,
    r.enqueued_at,
    r.run_after,
    r.started_at,
    r.finished_at,
    extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_seconds,
    r.worker_id,
    w.name AS worker_name,
    r.exit_code,
    r.error,
    r.output_bytes,
    r.output_truncated,
    r.cancel_requested_at,
    r.pool,
    r.params,
    r.upstream,
    r.retried_by
FROM tock.finished_runs r
JOIN tock.jobs j ON j.id = r.job_id
LEFT JOIN tock.workers w ON w.id = r.worker_id
WHERE r.finished_at >= now() - (SELECT c.history_retention FROM tock.config c);
COMMENT ON VIEW tock.run_history_finished IS 'tock.run_history''s runs that ended, within the retention.';

CREATE OR REPLACE VIEW tock.run_history AS
SELECT * FROM tock.run_history_in_flight
UNION ALL
SELECT * FROM tock.run_history_finished;
COMMENT ON VIEW tock.run_history IS 'Every run, in flight or ended within the retention, with its job, times, duration, worker, exit code and error (output: tock.run_logs).';

CREATE OR REPLACE VIEW tock.worker_overview AS
SELECT
    w.id,
    w.name,
    w.host,
    w.pid,
    w.concurrency,
    w.state,
    w.state IN ('running', 'stopping') AND w.last_heartbeat_at > now() - interval '15 seconds' AS alive,
    w.started_at,
    w.last_heartbeat_at,
    extract(epoch FROM now() - w.last_heartbeat_at)::float8 AS heartbeat_age_seconds,
    w.stopped_at,
    w.runs_processed,
    (SELECT count(*) FROM tock.run_leases l WHERE l.worker_id = w.id) AS running,
    w.scripts_dir,
    w.version,
    w.claim_error,
    w.claim_failing_since,
    w.pools
FROM tock.workers w;
COMMENT ON VIEW tock.worker_overview IS 'Every worker: state, whether its heartbeat is fresh (alive), runs in flight and processed, and the error of its claims while they keep failing.';

-- The pools each live worker serves: running (a stopping worker claims nothing) and heartbeating within 15 s.
-- A pool none of them serves is where its runs wait (tock.lag, tock.pool_overview, tock.run_detail).
CREATE OR REPLACE FUNCTION tock.live_worker_pools()
RETURNS SETOF text[] LANGUAGE sql STABLE AS $$
    SELECT w.pools FROM tock.workers w
    WHERE w.state = 'running' AND w.last_heartbeat_at > pg_catalog.now() - interval '15 seconds'
$$;
COMMENT ON FUNCTION tock.live_worker_pools() IS 'The pools of each live worker (running, heartbeat within 15 s), one array per worker.';

CREATE OR REPLACE FUNCTION tock.workers_serving(p_pool text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM tock.live_worker_pools() AS l(pools) WHERE p_pool = ANY (l.pools)
$$;
COMMENT ON FUNCTION tock.workers_serving(text) IS 'How many live workers serve the pool: 0 means its runs wait for one.';

-- The queue by priority and pool: how many runs wait, how many are ready now, how long the oldest ready one has
-- waited, and how many live workers serve the pool (0: they wait for a worker of that pool, not their turn).
CREATE OR REPLACE VIEW tock.lag AS
SELECT
    r.priority,
    count(*) AS waiting,
    count(*) FILTER (WHERE r.run_after <= now()) AS ready,
    count(*) FILTER (WHERE r.run_after > now()) AS delayed,
    min(r.run_after) FILTER (WHERE r.run_after <= now()) AS oldest_ready_at,
    coalesce(extract(epoch FROM now() - min(r.run_after) FILTER (WHERE r.run_after <= now())), 0)::float8
        AS oldest_ready_age_seconds,
    r.pool,
    tock.workers_serving(r.pool) AS workers_alive
FROM tock.runs r
WHERE r.status = 'pending'
GROUP BY r.priority, r.pool;
COMMENT ON VIEW tock.lag IS 'Pending runs per priority and pool: waiting, ready now, delayed (retry backoff), the oldest ready run''s age, and the live workers serving the pool (0: none, the runs wait for one).';

-- The queue's totals: tock.lag summed over its priorities and pools (so the two never disagree on what is ready),
-- and the running runs (a count of their leases).
CREATE OR REPLACE VIEW tock.queue_depth AS
SELECT
    coalesce(sum(l.waiting), 0)::bigint AS pending,
    coalesce(sum(l.ready), 0)::bigint AS ready,
    coalesce(sum(l.delayed), 0)::bigint AS delayed,
    (SELECT count(*) FROM tock.run_leases) AS running,
    min(l.oldest_ready_at) AS oldest_ready_at,
    coalesce(max(l.oldest_ready_age_seconds), 0)::float8 AS oldest_ready_age_seconds
FROM tock.lag l;
COMMENT ON VIEW tock.queue_depth IS 'Runs waiting (ready now, or delayed) and running, and how long the oldest ready run has waited.';

-- The queue at a glance, for pages that are read often (the dashboard's GET /stats): tock.queue_depth's figures,
-- exact while at most p_limit runs are pending, and bounded by p_limit when more are. Counting is the cost: an
-- exact count reads every pending run, however deep the queue, where a glance reads at most p_limit + 1 entries
-- of runs_claim_idx. Over the limit (capped), pending is
-- p_limit and ready and delayed are what the first p_limit runs in claim order hold: each is a lower bound. The
-- running count and the oldest ready run stay exact (the first is bounded by the workers' slots, the second is
-- one index seek per priority). Exact counts at any depth: tock.queue_depth, /health and /metrics.
CREATE OR REPLACE FUNCTION tock.queue_glance(p_limit int DEFAULT 10000, p_now timestamptz DEFAULT now())
RETURNS TABLE (pending bigint, ready bigint, delayed bigint, running bigint, oldest_ready_at timestamptz,
               oldest_ready_age_seconds float8, capped boolean)
LANGUAGE plpgsql STABLE
-- The limited walk must stay a walk of runs_claim_idx in its order, whatever p_limit a generic plan assumes: the
-- planner settings of tock.claim_runs, for the reason given there.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off
AS $$
DECLARE
    v_oldest timestamptz;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        PERFORM tock.raise_invalid('limit', format('%s is not a positive number of runs', coalesce(p_limit::text, 'NULL')));
    END IF;
    -- The oldest ready run: a few index seeks, however deep the queue.
    v_oldest := tock.earliest_pending(true, p_now);
    RETURN QUERY
    WITH seen AS (
        SELECT r.run_after FROM tock.runs r
        -- run_after >= '-infinity' (always true) implies runs_claim_idx's predicate (see tock.earliest_pending).
        -- In the index's order, pool by pool: the first p_limit + 1 of any order bound the counts alike.
        WHERE r.status = 'pending' AND r.run_after >= '-infinity'
        ORDER BY r.pool, r.priority DESC, r.run_after, r.id
        LIMIT p_limit + 1
    ), counted AS (
        SELECT count(*) AS n, count(*) FILTER (WHERE s.run_after <= p_now) AS ready_n FROM seen s
    )
    -- Over the limit, the p_limit + 1 runs seen hold p_limit + 1 ready or delayed ones: ready is capped at p_limit
    -- and delayed is the rest of p_limit, each still a lower bound for the whole queue.
    SELECT least(c.n, p_limit),
           least(c.ready_n, p_limit),
           least(c.n, p_limit) - least(c.ready_n, p_limit),
           (SELECT count(*) FROM tock.run_leases),
           v_oldest,
           coalesce(extract(epoch FROM p_now - v_oldest), 0)::float8,
           c.n > p_limit
    FROM counted c;
END $$;
COMMENT ON FUNCTION tock.queue_glance(int, timestamptz) IS
    'tock.queue_depth for often-read pages: exact up to p_limit pending runs; beyond it capped (pending = p_limit, ready and delayed lower bounds).';

-- Each pool that a job names, a run in flight is in, or a live worker serves: its jobs, its runs waiting and running,
-- how long its oldest ready run has waited, and the live workers that serve it (running: a stopping worker claims
-- nothing). A pool with runs waiting and no live worker is where they stay (tock doctor warns of it).
CREATE OR REPLACE VIEW tock.pool_overview AS
WITH RECURSIVE in_flight (pool) AS (
    -- The pools of the runs in flight: a loose scan of runs_claim_idx, one seek per pool.
    (SELECT r.pool FROM tock.runs r WHERE r.run_after >= '-infinity' ORDER BY r.pool LIMIT 1)
    UNION ALL
    SELECT (SELECT r.pool FROM tock.runs r WHERE r.pool > f.pool AND r.run_after >= '-infinity' ORDER BY r.pool LIMIT 1)
    FROM in_flight f WHERE f.pool IS NOT NULL
), jobs AS (
    SELECT j.pool, count(*) AS jobs FROM tock.jobs j GROUP BY j.pool
), pools AS (
    SELECT j.pool FROM jobs j
    UNION
    SELECT f.pool FROM in_flight f WHERE f.pool IS NOT NULL
    UNION
    SELECT unnest(l.pools) FROM tock.live_worker_pools() AS l(pools)
    UNION
    SELECT l.name FROM tock.pools l
)
SELECT
    p.pool,
    coalesce((SELECT j.jobs FROM jobs j WHERE j.pool = p.pool), 0) AS jobs,
    q.pending,
    q.ready,
    q.running,
    coalesce(extract(epoch FROM now() - q.oldest_ready_at), 0)::float8 AS oldest_ready_age_seconds,
    tock.workers_serving(p.pool) AS workers_alive,
    (SELECT l.max_running FROM tock.pools l WHERE l.name = p.pool) AS max_running,
    (SELECT tock.rate_text(l.rate_limit, l.rate_period) FROM tock.pools l WHERE l.name = p.pool) AS rate
FROM pools p
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE r.status = 'pending') AS pending,
           count(*) FILTER (WHERE r.status = 'pending' AND r.run_after <= now()) AS ready,
           count(*) FILTER (WHERE r.status = 'running') AS running,
           min(r.run_after) FILTER (WHERE r.status = 'pending' AND r.run_after <= now()) AS oldest_ready_at
    FROM tock.runs r WHERE r.pool = p.pool AND r.run_after >= '-infinity'
) q;
COMMENT ON VIEW tock.pool_overview IS 'Each pool: its jobs, runs waiting (ready now) and running, the oldest ready run''s age, the live workers serving it, and its limits.';
