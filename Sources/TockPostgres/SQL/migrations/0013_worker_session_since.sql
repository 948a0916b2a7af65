-- 0013_worker_session_since: a worker's session lock counts only if it was taken since the server last started.
-- Forward-only.

-- A restart of PostgreSQL (a crash, pg_ctl stop -m immediate) ends every session and with it every worker's lock.
-- tock.rescue() counted a worker's heartbeat age from the server's start, but the start is when the postmaster
-- began crash recovery, not when it took connections: under load recovery took 8 s, the first rescue after it saw
-- every worker 2 s stale with its lock gone, and stopped workers that were reconnecting. Now a lock taken before
-- the server's start says nothing; until the worker takes it again only the 30 s heartbeat silence counts, as for a
-- worker that has not held its lock yet.
ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS session_since timestamptz;
COMMENT ON COLUMN tock.workers.session_since IS
    'When the worker last took its session lock (tock.hold_worker_session); before the server''s start, it counts for nothing.';
-- Workers alive now that hold their lock keep it trusted (the key is tock.worker_lock_key()'s: on a new database
-- the functions are created after the migrations); the others are judged by heartbeats until they reconnect.
UPDATE tock.workers w SET session_since = now()
WHERE w.session_locked AND w.state IN ('running', 'stopping')
  AND EXISTS (
      SELECT 1 FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = 1953459051::oid
        AND l.objid = w.id::oid AND l.pid = w.session_pid
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()));
