-- 0016_worker_names: a chosen worker name (`tock worker --name`) belongs to one live worker. Forward-only.

-- Names of live workers that chose them are unique; a host:pid name (it has a ':', which a chosen name may not)
-- is left out, as a restarted process may reuse a pid while its predecessor is not yet judged lost. Enforced by
-- the database, so two workers starting together with one name cannot both take it.
CREATE UNIQUE INDEX IF NOT EXISTS workers_live_name_idx ON tock.workers (name)
    WHERE state IN ('running', 'stopping') AND strpos(name, ':') = 0;
