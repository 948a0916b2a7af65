-- 0001_init: Tock's tables. Forward-only: never edit this file once it has landed; add 0002_….sql instead.
--
-- Apply with `tock migrate`, or as a DBA with psql, one transaction per file, migrations first:
--   psql -v ON_ERROR_STOP=1 -1 -f sql/migrations/0001_init.sql
--   for f in sql/functions/*.sql; do psql -v ON_ERROR_STOP=1 -1 -f "$f"; done
-- Tables are private in spirit: the public interface is the functions and views in sql/functions.

CREATE SCHEMA IF NOT EXISTS tock;
COMMENT ON SCHEMA tock IS 'Tock: scheduled and on-demand scripts, run by workers that claim from this schema.';

-- Which migrations are applied. `tock migrate` fills in checksum; a file applied by psql records itself
-- with a NULL checksum, which the next `tock migrate` adopts.
CREATE TABLE IF NOT EXISTS tock.migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    checksum   text,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tock.migrations IS 'Applied migrations (sql/migrations) and the checksum of the applied functions (version 0).';

-- The IANA zone names this server knows, so a job's time zone is checked by a foreign key.
-- Refreshed from pg_timezone_names by every `tock migrate` that applies sql/functions.
CREATE TABLE tock.timezones (
    name text PRIMARY KEY
);
INSERT INTO tock.timezones (name)
SELECT name FROM pg_timezone_names WHERE name NOT LIKE 'posix/%' AND name <> 'posixrules'
ON CONFLICT DO NOTHING;

-- A schedule string parsed once (by the jobs trigger), so the scheduler never re-parses text.
CREATE TYPE tock.schedule_spec AS (
    kind                text,      -- 'interval', 'calendar' or 'manual'
    every               interval,  -- interval kind: the period, anchored at jobs.anchor_at
    minutes             int[],     -- calendar kind: the matching local minutes, hours, days, months, weekdays
    hours               int[],
    days                int[],
    months              int[],
    weekdays            int[],     -- 0 = Sunday
    days_restricted     boolean,   -- both restricted: a day matches when either matches (Vixie cron)
    weekdays_restricted boolean,
    clamp_to_month_end  boolean    -- 'monthly on 31': shorter months fire on their last day
);

CREATE TABLE tock.jobs (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text NOT NULL,
    script               text NOT NULL,
    args                 text[] NOT NULL DEFAULT '{}',
    schedule             text NOT NULL DEFAULT 'manual',
    schedule_description text NOT NULL DEFAULT '',       -- maintained by tg_jobs__prepare
    spec                 tock.schedule_spec,             -- maintained by tg_jobs__prepare
    timezone             text NOT NULL DEFAULT 'UTC',
    enabled              boolean NOT NULL DEFAULT true,
    priority             smallint NOT NULL DEFAULT 50,
    timeout              interval NOT NULL DEFAULT '1 hour',
    max_attempts         int NOT NULL DEFAULT 1,
    overlap              text NOT NULL DEFAULT 'skip',
    anchor_at            timestamptz NOT NULL DEFAULT now(), -- interval schedules keep their cadence from here
    next_run_at          timestamptz,                    -- NULL: manual or paused
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobs_name_is_unique UNIQUE (name),
    CONSTRAINT jobs_name_is_valid CHECK (name ~ '^[A-Za-z][A-Za-z0-9._-]{0,99}$'),
    CONSTRAINT jobs_script_is_inside_sandbox CHECK (
        script <> '' AND script !~ '^/' AND script !~ '(^|/)\.\.(/|$)'),
    CONSTRAINT jobs_timezone_is_valid FOREIGN KEY (timezone) REFERENCES tock.timezones (name),
    CONSTRAINT jobs_priority_is_in_range CHECK (priority BETWEEN 0 AND 100),
    CONSTRAINT jobs_timeout_is_positive CHECK (timeout > interval '0'),
    CONSTRAINT jobs_max_attempts_is_in_range CHECK (max_attempts BETWEEN 1 AND 100),
    CONSTRAINT jobs_overlap_is_known CHECK (overlap IN ('skip', 'queue', 'allow')),
    CONSTRAINT jobs_schedule_is_parsed CHECK ((spec).kind IN ('interval', 'calendar', 'manual'))
);
COMMENT ON TABLE tock.jobs IS 'Scripts and their schedules. Write through tock.create_job/update_job or plain SQL; the triggers validate.';
-- The scheduler's only query on this table: the earliest due job.
CREATE INDEX jobs_due_idx ON tock.jobs (next_run_at) WHERE enabled AND next_run_at IS NOT NULL;

CREATE TABLE tock.workers (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL,
    host              text NOT NULL,
    pid               int NOT NULL,
    concurrency       int NOT NULL,
    state             text NOT NULL DEFAULT 'running',
    scripts_dir       text,
    version           text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at        timestamptz,
    runs_processed    bigint NOT NULL DEFAULT 0,
    CONSTRAINT workers_concurrency_is_in_range CHECK (concurrency BETWEEN 1 AND 1000),
    CONSTRAINT workers_state_is_known CHECK (state IN ('running', 'stopping', 'stopped', 'lost'))
);
COMMENT ON TABLE tock.workers IS 'One row per worker process that ever registered; see tock.worker_overview.';

-- The hot queue: narrow rows, output kept apart in tock.run_output.
CREATE TABLE tock.runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        bigint NOT NULL REFERENCES tock.jobs (id) ON DELETE CASCADE,
    trigger       text NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    priority      smallint NOT NULL DEFAULT 50,           -- copied from the job so one index orders the claim
    attempt       int NOT NULL DEFAULT 1,
    first_run_id  bigint REFERENCES tock.runs (id) ON DELETE CASCADE, -- retries point at attempt 1
    scheduled_for timestamptz,                            -- the fire time, for schedule runs
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    run_after     timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    worker_id     bigint REFERENCES tock.workers (id) ON DELETE SET NULL,
    exit_code     int,
    error         text,
    CONSTRAINT runs_trigger_is_known CHECK (trigger IN ('schedule', 'manual', 'sql', 'api', 'retry')),
    CONSTRAINT runs_status_is_known CHECK (
        status IN ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'dead')),
    CONSTRAINT runs_attempt_is_positive CHECK (attempt >= 1),
    CONSTRAINT runs_running_has_started CHECK (status <> 'running' OR started_at IS NOT NULL),
    CONSTRAINT runs_finished_iff_final CHECK ((status IN ('pending', 'running')) = (finished_at IS NULL)),
    CONSTRAINT runs_schedule_has_fire_time CHECK (trigger <> 'schedule' OR scheduled_for IS NOT NULL)
);
COMMENT ON TABLE tock.runs IS 'Every run of every job. Change a run only through the tock.* functions; read tock.run_history.';
-- Matches tock.claim_runs exactly: highest priority first, then oldest.
CREATE INDEX runs_claim_idx ON tock.runs (priority DESC, run_after, id) WHERE status = 'pending';
-- Each fire time of a job yields at most one scheduled run, whatever the schedulers do.
CREATE UNIQUE INDEX runs_one_per_fire_time ON tock.runs (job_id, scheduled_for) WHERE trigger = 'schedule';
CREATE INDEX runs_job_history_idx ON tock.runs (job_id, id DESC);
CREATE INDEX runs_active_idx ON tock.runs (job_id) WHERE status IN ('pending', 'running');
CREATE INDEX runs_running_worker_idx ON tock.runs (worker_id) WHERE status = 'running';
CREATE INDEX runs_first_run_idx ON tock.runs (first_run_id) WHERE first_run_id IS NOT NULL;

CREATE TABLE tock.run_output (
    run_id      bigint PRIMARY KEY REFERENCES tock.runs (id) ON DELETE CASCADE,
    output      text NOT NULL DEFAULT '',   -- stdout and stderr interleaved, the last bytes up to the worker's cap
    bytes_total bigint NOT NULL DEFAULT 0,  -- how many bytes the script wrote in all
    truncated   boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tock.run_output IS 'What each run printed (stdout and stderr together), apart from the hot queue rows.';

INSERT INTO tock.migrations (version, name) VALUES (1, '0001_init') ON CONFLICT (version) DO NOTHING;
