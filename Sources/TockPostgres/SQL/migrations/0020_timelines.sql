-- 0020_timelines: when Tock first saw each timeline of this database. A promoted standby starts a new timeline
-- without a restart, and the workers' session locks of the old primary are not held on it: tock.server_started_at()
-- counts from the promotion too, so tock.rescue() judges workers by their heartbeats until they hold their locks
-- on the new primary. Forward-only.

CREATE TABLE IF NOT EXISTS tock.timelines (
    timeline   bigint PRIMARY KEY,
    first_seen timestamptz NOT NULL
);
COMMENT ON TABLE tock.timelines IS
    'When tock.rescue() first ran on each timeline (a promoted standby begins a new one): sessions from before are gone.';
