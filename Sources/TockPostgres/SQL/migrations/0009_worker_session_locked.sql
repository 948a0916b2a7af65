-- 0009_worker_session_locked: a worker is judged by its session lock only once it has held it. Forward-only.

-- tock.rescue() marks a worker lost when its session lock is gone and its heartbeat is 2 s stale. A worker
-- registers before its LISTEN connection takes that lock, so a worker whose first connect was slow (a loaded
-- server, its connection slots used up) and whose heartbeat was late was taken for dead while starting, and
-- stopped. tock.hold_worker_session() takes the lock and sets this; until then only the 30 s heartbeat silence
-- counts.
ALTER TABLE tock.workers ADD COLUMN IF NOT EXISTS session_locked boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN tock.workers.session_locked IS
    'The worker has held its session lock (tock.hold_worker_session): from then on, its lock gone means it is gone.';

-- Workers of the version before, alive now, hold their lock already (a direct pg_try_advisory_lock). The key is
-- tock.worker_lock_key()'s: on a new database the functions are created after the migrations.
UPDATE tock.workers w SET session_locked = true
WHERE w.state IN ('running', 'stopping')
  AND EXISTS (
      SELECT 1 FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = 1953459051::oid
        AND l.objid = w.id::oid AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()));
