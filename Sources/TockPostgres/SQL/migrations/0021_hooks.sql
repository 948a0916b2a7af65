-- 0021_hooks: what happens when a run ends, or a scheduled run is late: a webhook POST, signed as Standard Webhooks
-- 1.0 says. A run's end writes its deliveries in the same transaction (tock.end_runs -> tock.enqueue_hooks), so none
-- is lost; delivery services send them (tock.claim_deliveries). Forward-only.

SET LOCAL lock_timeout = '30s';

CREATE TABLE IF NOT EXISTS tock.hooks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL: every job (a fleet hook).
    job_id       bigint REFERENCES tock.jobs (id) ON DELETE CASCADE,
    event        text NOT NULL,
    -- A webhook's address, and the whsec_ secret it is signed with (never shown by a view: a Slack webhook's path
    -- is a secret too, so views show the origin alone).
    url          text NOT NULL,
    secret       text NOT NULL,
    -- 'late': how long after its fire time a scheduled run that has not started counts as late.
    late_after   interval,
    max_attempts int NOT NULL DEFAULT 12,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hooks_event_is_known CHECK (event IN ('failed', 'dead', 'timed_out', 'succeeded', 'recovered', 'late')),
    CONSTRAINT hooks_url_is_http CHECK (url ~ '^https?://[^/?#@[:space:]]+([/?#][^[:space:]]*)?$' AND length(url) <= 2000),
    -- Base64 that decodes (a length a multiple of 4) to at least 24 bytes, as every Standard Webhooks library reads it.
    CONSTRAINT hooks_secret_is_whsec CHECK (secret ~ '^whsec_([A-Za-z0-9+/]{4}){8,50}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'),
    CONSTRAINT hooks_late_after_iff_late CHECK ((event = 'late') = (late_after IS NOT NULL)
                                                AND (late_after IS NULL OR late_after BETWEEN interval '1 second' AND interval '7 days')),
    CONSTRAINT hooks_max_attempts_in_range CHECK (max_attempts BETWEEN 1 AND 50)
);
CREATE INDEX IF NOT EXISTS hooks_job_idx ON tock.hooks (job_id);
COMMENT ON TABLE tock.hooks IS
    'Webhooks for when a job''s run ends (failed, dead, timed_out, succeeded, recovered) or is late; job_id NULL: every job.';

CREATE TABLE IF NOT EXISTS tock.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hook_id         bigint REFERENCES tock.hooks (id) ON DELETE SET NULL,
    job_id          bigint NOT NULL,
    run_id          bigint NOT NULL,
    event           text NOT NULL,
    -- webhook-id: the same on every attempt, so a receiver can drop a repeat.
    message_id      text NOT NULL,
    url             text NOT NULL,
    -- The JSON sent, fixed when the run ended: every attempt sends the same bytes.
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        int NOT NULL DEFAULT 0,
    max_attempts    int NOT NULL DEFAULT 12,
    -- The attempts before the last retry by hand: the backoff starts again from there.
    round_start     int NOT NULL DEFAULT 0,
    -- When it may be sent (again); while 'sending', when its sender's hold runs out.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_code       int,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT deliveries_status_is_known CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    CONSTRAINT deliveries_one_per_hook_run_event UNIQUE (hook_id, run_id, event)
);
CREATE INDEX IF NOT EXISTS deliveries_due_idx ON tock.deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX IF NOT EXISTS deliveries_job_idx ON tock.deliveries (job_id, id DESC);
CREATE INDEX IF NOT EXISTS deliveries_created_idx ON tock.deliveries (created_at);
COMMENT ON TABLE tock.deliveries IS 'The webhook outbox: one row per hook and run, with its state; read tock.delivery_overview.';

CREATE TABLE IF NOT EXISTS tock.delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES tock.deliveries (id) ON DELETE CASCADE,
    attempt     int NOT NULL,
    started_at  timestamptz NOT NULL,
    duration_ms float8,
    status_code int,
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);
COMMENT ON TABLE tock.delivery_attempts IS 'Each attempt to send a delivery: the receiver''s status code, or why it failed.';

-- The portal's address, for links in webhook messages.
ALTER TABLE tock.config ADD COLUMN IF NOT EXISTS portal_url text NOT NULL DEFAULT '';
ALTER TABLE tock.config DROP CONSTRAINT IF EXISTS config_portal_url_is_http;
ALTER TABLE tock.config ADD CONSTRAINT config_portal_url_is_http
    CHECK (portal_url = '' OR (portal_url ~ '^https?://[^[:space:]]+$' AND length(portal_url) <= 500));
