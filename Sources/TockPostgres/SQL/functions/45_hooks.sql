-- Hooks: webhooks sent when a job's run ends a certain way, or a scheduled run is late (migration 0021). A run's end
-- writes its deliveries in its own transaction (tock.end_runs calls tock.enqueue_hooks); delivery services claim
-- them (SKIP LOCKED), send them and record each attempt. At least once: a sender that dies mid-send leaves its
-- delivery to be sent again when its hold runs out, with the same webhook-id.

-- A new signing secret: whsec_ and 32 bytes in base64 (Standard Webhooks 1.0), from two random UUIDs (244 random
-- bits).
CREATE OR REPLACE FUNCTION tock.new_webhook_secret()
RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64')
$$;

-- A URL as people may see it: its scheme and host (a Slack or Teams webhook's path is its secret).
CREATE OR REPLACE FUNCTION tock.url_origin(p_url text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT substring(p_url FROM '^(https?://[^/?#]+)')
$$;
COMMENT ON FUNCTION tock.url_origin(text) IS
    'The scheme, host and port of a URL: what the hooks show to readers, never its path or query.';

-- Adds a webhook to a job (p_job; NULL or '*': every job) for p_event: failed, dead, timed_out, succeeded,
-- recovered (the first success after a failure), or late (a scheduled run not started p_late_after after its fire
-- time). p_secret: a whsec_ secret to sign with, or NULL for a new one. Returns the hook's id and its secret: the one
-- time the secret is shown.
-- With p_run_job instead of p_url, a chain: the end p_event names enqueues a run of that job (tock.enqueue_hooks),
-- which takes its parameters' defaults. A chain belongs to one job, follows a run's end (not late), and may not
-- close a cycle (A runs B, B runs A: refused, naming the jobs).
DROP FUNCTION IF EXISTS tock.add_hook(text, text, text, interval, text, int);
CREATE OR REPLACE FUNCTION tock.add_hook(
    p_job text, p_event text, p_url text, p_late_after interval DEFAULT NULL, p_secret text DEFAULT NULL,
    p_max_attempts int DEFAULT 12, p_run_job text DEFAULT NULL)
RETURNS TABLE (hook_id bigint, secret text) LANGUAGE plpgsql AS $$
DECLARE
    v_job bigint;
    v_secret text := coalesce(p_secret, tock.new_webhook_secret());
    v_id bigint;
    v_target bigint;
    v_required text;
BEGIN
    IF p_job IS NOT NULL AND p_job <> '*' THEN
        v_job := tock.find_job(p_job);
    END IF;
    IF p_event IS NULL OR p_event NOT IN ('failed', 'dead', 'timed_out', 'succeeded', 'recovered', 'late') THEN
        PERFORM tock.raise_invalid('event', format('%L is not failed, dead, timed_out, succeeded, recovered or late',
                                                   left(coalesce(p_event, ''), 40)));
    END IF;
    IF p_run_job IS NOT NULL THEN
        IF p_url IS NOT NULL OR p_secret IS NOT NULL OR p_late_after IS NOT NULL THEN
            PERFORM tock.raise_invalid('run_job', 'a hook either runs a job or calls a webhook (url), not both');
        END IF;
        IF v_job IS NULL THEN
            PERFORM tock.raise_invalid('job', 'a chain belongs to one job: every job running another would run it after itself');
        END IF;
        IF p_event = 'late' THEN
            PERFORM tock.raise_invalid('event', 'a chain follows a run''s end: failed, dead, timed_out, succeeded or recovered');
        END IF;
        v_target := tock.find_job(p_run_job);
        -- One chain edit at a time, so that two cannot close a cycle between them.
        PERFORM pg_advisory_xact_lock(tock.worker_lock_key() + 6, 0);
        IF v_target = v_job OR EXISTS (
            WITH RECURSIVE reach(id) AS (
                SELECT v_target
                UNION
                SELECT h.run_job_id FROM tock.hooks h JOIN reach r ON h.job_id = r.id WHERE h.run_job_id IS NOT NULL)
            SELECT 1 FROM reach WHERE reach.id = v_job) THEN
            PERFORM tock.raise_invalid('run_job', format(
                'running %s after %s would make a cycle: %s already leads back to %s (directly or through other jobs)',
                (SELECT name FROM tock.jobs WHERE id = v_target), (SELECT name FROM tock.jobs WHERE id = v_job),
                (SELECT name FROM tock.jobs WHERE id = v_target), (SELECT name FROM tock.jobs WHERE id = v_job)));
        END IF;
        SELECT d ->> 'name' INTO v_required FROM tock.jobs j, jsonb_array_elements(coalesce(j.params, '[]')) d
        WHERE j.id = v_target AND d ? 'required' AND NOT d ? 'default' LIMIT 1;
        IF v_required IS NOT NULL THEN
            PERFORM tock.raise_invalid('run_job', format(
                'a chained run takes its parameters'' defaults, and %s''s parameter %s is required with none: give it a default',
                p_run_job, v_required));
        END IF;
        PERFORM pg_advisory_xact_lock(tock.worker_lock_key() + 5, v_job::int);
        IF (SELECT count(*) FROM tock.hooks h WHERE h.job_id = v_job) >= 20 THEN
            PERFORM tock.raise_invalid('job', format('%s has 20 hooks already', p_job));
        END IF;
        IF EXISTS (SELECT 1 FROM tock.hooks h WHERE h.job_id = v_job AND h.event = p_event AND h.run_job_id = v_target) THEN
            PERFORM tock.raise_invalid('run_job', format('%s already runs %s when a run ends %s', p_job, p_run_job, p_event));
        END IF;
        INSERT INTO tock.hooks (job_id, event, run_job_id, max_attempts) VALUES (v_job, p_event, v_target, 1)
        RETURNING id INTO v_id;
        RETURN QUERY SELECT v_id, NULL::text;
        RETURN;
    END IF;
    IF p_url IS NULL OR length(p_url) > 2000 THEN
        PERFORM tock.raise_invalid('url', 'give the webhook''s URL, at most 2,000 characters');
    END IF;
    -- Not echoed: a webhook's URL may be its secret.
    IF p_url !~ '^https?://' THEN
        PERFORM tock.raise_invalid('url', 'not an http:// or https:// URL');
    END IF;
    IF p_url !~ '^https?://[A-Za-z0-9._:\[\]-]+([/?#][^[:space:]]*)?$' THEN
        PERFORM tock.raise_invalid('url', format('%L has no host, a user name or password, %%-encoding in its host, or a space',
                                                 tock.url_origin(p_url)));
    END IF;
    IF p_secret IS NOT NULL AND p_secret !~ '^whsec_([A-Za-z0-9+/]{4}){8,50}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$' THEN
        PERFORM tock.raise_invalid('secret', 'a signing secret is whsec_ and 24 to 150 bytes in padded base64; leave it out for a new one');
    END IF;
    IF (p_event = 'late') <> (p_late_after IS NOT NULL) THEN
        PERFORM tock.raise_invalid('late_after', 'a late hook says how late (late_after, e.g. 5m); other hooks do not');
    END IF;
    IF p_late_after IS NOT NULL AND p_late_after NOT BETWEEN interval '1 second' AND interval '7 days' THEN
        PERFORM tock.raise_invalid('late_after', format('%s is not between 1 second and 7 days', p_late_after));
    END IF;
    IF p_max_attempts IS NULL OR p_max_attempts NOT BETWEEN 1 AND 50 THEN
        PERFORM tock.raise_invalid('max_attempts', format('%s is not between 1 and 50', coalesce(p_max_attempts::text, 'NULL')));
    END IF;
    -- A bound per job (and for the fleet): each run's end reads its hooks. Counted under a lock, so that two adds
    -- at once cannot both pass it.
    PERFORM pg_advisory_xact_lock(tock.worker_lock_key() + 5, coalesce(v_job, 0)::int);
    IF (SELECT count(*) FROM tock.hooks h WHERE h.job_id IS NOT DISTINCT FROM v_job) >= 20 THEN
        PERFORM tock.raise_invalid('job', format('%s has 20 hooks already', coalesce(p_job, 'the fleet')));
    END IF;
    INSERT INTO tock.hooks (job_id, event, url, secret, late_after, max_attempts)
    VALUES (v_job, p_event, p_url, v_secret, p_late_after, p_max_attempts)
    RETURNING id INTO v_id;
    RETURN QUERY SELECT v_id, v_secret;
END $$;
COMMENT ON FUNCTION tock.add_hook(text, text, text, interval, text, int, text) IS
    'Adds a webhook to a job (or every job: NULL) for an event, or with p_run_job a chain; returns its id and signing secret (shown this once).';

-- The same from JSON (the API's POST /hooks): {"job", "event", "url", "late_after", "secret", "max_attempts"}, or
-- {"job", "event", "run_job"} for a chain.
CREATE OR REPLACE FUNCTION tock.add_hook_json(p_hook jsonb)
RETURNS TABLE (hook_id bigint, secret text) LANGUAGE plpgsql AS $$
DECLARE
    v_unknown text;
BEGIN
    IF jsonb_typeof(p_hook) IS DISTINCT FROM 'object' THEN
        PERFORM tock.raise_invalid('body', 'expected a JSON object: {"job": "nightly", "event": "failed", "url": "https://…"}');
    END IF;
    IF p_hook ->> 'job' IS NULL THEN
        PERFORM tock.raise_invalid('job', 'give the job''s name or id, or * for every job');
    END IF;
    SELECT k INTO v_unknown FROM jsonb_object_keys(p_hook) k
    WHERE k NOT IN ('job', 'event', 'url', 'late_after', 'secret', 'max_attempts', 'run_job') LIMIT 1;
    IF FOUND THEN
        PERFORM tock.raise_invalid(left(v_unknown, 60), 'unknown field; a hook has job, event, url or run_job, late_after, secret, max_attempts');
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each(p_hook) e WHERE e.key <> 'max_attempts' AND jsonb_typeof(e.value) NOT IN ('string', 'null'))
       OR jsonb_typeof(p_hook -> 'max_attempts') NOT IN ('number', 'null') THEN
        PERFORM tock.raise_invalid('body', 'job, event, url, run_job, late_after and secret are strings; max_attempts is a number');
    END IF;
    IF (p_hook ->> 'max_attempts') IS NOT NULL AND (p_hook ->> 'max_attempts') !~ '^[0-9]{1,3}$' THEN
        PERFORM tock.raise_invalid('max_attempts', 'a whole number from 1 to 50');
    END IF;
    RETURN QUERY SELECT * FROM tock.add_hook(
        p_hook ->> 'job', p_hook ->> 'event', p_hook ->> 'url',
        CASE WHEN p_hook ->> 'late_after' IS NOT NULL THEN tock.parse_duration(p_hook ->> 'late_after', 'late_after') END,
        p_hook ->> 'secret', coalesce((p_hook ->> 'max_attempts')::int, 12), p_hook ->> 'run_job');
END $$;
COMMENT ON FUNCTION tock.add_hook_json(jsonb) IS
    'Adds a hook from JSON (a webhook or a chain on a job''s run ends); returns its id and, for a webhook, its secret once.';

CREATE OR REPLACE FUNCTION tock.remove_hook(p_hook bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tock.hooks WHERE id = p_hook;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'hook: unknown hook %', p_hook USING ERRCODE = 'no_data_found', COLUMN = 'hook';
    END IF;
    RETURN p_hook;
END $$;
COMMENT ON FUNCTION tock.remove_hook(bigint) IS
    'Removes a hook; its deliveries stay in the log. Returns its id.';

-- The hooks, as people may see them: never the secret, and the URL's origin alone (NULL for a chain, which names
-- the job it runs).
CREATE OR REPLACE VIEW tock.hook_list AS
SELECT h.id, h.job_id, coalesce(j.name, '*') AS job_name, h.event, tock.url_origin(h.url) AS url_origin,
       tock.duration_text(h.late_after) AS late_after, h.max_attempts, h.created_at, t.name AS run_job
FROM tock.hooks h
LEFT JOIN tock.jobs j ON j.id = h.job_id
LEFT JOIN tock.jobs t ON t.id = h.run_job_id;
COMMENT ON VIEW tock.hook_list IS 'The webhooks: job (* for every job), event, where they go (origin only), attempts.';

-- What a webhook says about a run: Standard Webhooks' {type, timestamp, data}, and a top-level "text" that Slack and
-- Teams show as it is. The last lines of output, at most 1,000 characters.
CREATE OR REPLACE FUNCTION tock.webhook_body(p_event text, p_run tock.finished_runs, p_job_name text, p_worker text,
                                             p_now timestamptz, p_will_retry boolean)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', 'run.' || p_event,
        'timestamp', to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'text', format('Tock: %s run #%s %s%s%s', p_job_name, p_run.id,
                       CASE p_event WHEN 'recovered' THEN 'succeeded again after a failure'
                                    WHEN 'timed_out' THEN 'timed out' ELSE p_event END,
                       CASE WHEN p_run.exit_code IS NOT NULL AND p_run.status <> 'succeeded'
                            THEN format(' (exit %s)', p_run.exit_code) ELSE '' END,
                       CASE WHEN c.portal_url <> '' THEN format(' %s/#/runs/%s', rtrim(c.portal_url, '/'), p_run.id) ELSE '' END),
        'data', jsonb_build_object(
            'job', p_job_name, 'run_id', p_run.id, 'status', p_run.status, 'attempt', p_run.attempt,
            'first_run_id', coalesce(p_run.first_run_id, p_run.id), 'will_retry', p_will_retry,
            'trigger', p_run.trigger, 'exit_code', p_run.exit_code, 'error', left(p_run.error, 1000),
            'scheduled_for', p_run.scheduled_for, 'enqueued_at', p_run.enqueued_at, 'started_at', p_run.started_at,
            'finished_at', p_run.finished_at,
            'duration_seconds', extract(epoch FROM p_run.finished_at - p_run.started_at)::float8,
            'worker', p_worker, 'pool', p_run.pool,
            -- Whole lines: a tail that starts mid-line loses that line's start.
            'output_tail', CASE WHEN length(p_run.output) > 1000
                                THEN regexp_replace(right(p_run.output, 1000), '^[^\n]*\n', '')
                                ELSE coalesce(p_run.output, '') END,
            'url', CASE WHEN c.portal_url <> '' THEN format('%s/#/runs/%s', rtrim(c.portal_url, '/'), p_run.id) END))::text
    FROM tock.config c
$$;

-- Which hooks a batch of ended runs sets off (tock.end_runs, in its transaction): each hook of the run's job, or of
-- every job, whose event the run's end is:
--   failed     an attempt failed, whether a retry follows (will_retry) or not (its last: status dead or failed);
--   timed_out  an attempt timed out and a retry follows, or it was the only attempt;
--   dead       the run failed for good: no retry follows its failure or timeout (whatever max_attempts is);
--   succeeded, and recovered: a success whose job's previous run (cancelled ones aside) did not succeed.
CREATE OR REPLACE FUNCTION tock.hooks_set_off(p_runs bigint[], p_now timestamptz)
RETURNS TABLE (hook tock.hooks, run tock.finished_runs, job_name text, worker_name text, will_retry boolean)
LANGUAGE sql STABLE SET jit = off AS $$
    SELECT h, f, j.name, w.name, e.will_retry
    FROM tock.finished_runs f
    CROSS JOIN LATERAL (
        SELECT EXISTS (SELECT 1 FROM tock.runs r WHERE r.job_id = f.job_id AND r.trigger = 'retry'
                          AND r.first_run_id = coalesce(f.first_run_id, f.id) AND r.attempt = f.attempt + 1) AS will_retry
    ) e
    JOIN tock.jobs j ON j.id = f.job_id
    JOIN tock.hooks h ON (h.job_id = f.job_id OR h.job_id IS NULL)
    LEFT JOIN tock.workers w ON w.id = f.worker_id
    -- finished_at is at least p_now (tock.end_runs): only the partitions that can hold these runs are looked into.
    WHERE f.id = ANY (p_runs) AND f.finished_at >= p_now
      AND CASE h.event
              WHEN 'failed' THEN f.status IN ('failed', 'dead')
              WHEN 'timed_out' THEN f.status = 'timed_out'
              WHEN 'dead' THEN f.status IN ('failed', 'timed_out', 'dead') AND NOT e.will_retry
              WHEN 'succeeded' THEN f.status = 'succeeded'
              WHEN 'recovered' THEN f.status = 'succeeded'
                  AND (SELECT p.status FROM tock.finished_runs p
                       WHERE p.job_id = f.job_id AND p.id < f.id AND p.status <> 'cancelled'
                       ORDER BY p.id DESC LIMIT 1) IN ('failed', 'timed_out', 'dead')
              ELSE false END
$$;

-- What the hooks a batch of ended runs sets off do, in the finish's transaction: a webhook's delivery goes into the
-- outbox; a chain's run is enqueued (trigger 'chain', its parameters' defaults, upstream: the run that ended and how
-- many chained runs led to it), once per ended run and job however many of its events the end is. Chains have no
-- cycle (tock.add_hook), and a run 20 chained runs deep starts no more, so a chain of runs ends. A paused job is not
-- run by a chain.
CREATE OR REPLACE FUNCTION tock.enqueue_hooks(p_runs bigint[], p_now timestamptz)
RETURNS void LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    -- The jobs chains would run, held until this commits: a delete of one under way is waited for, and the insert
    -- below (a statement of its own, so a snapshot of its own) no longer sees it. A finish must not fail on it.
    PERFORM 1 FROM tock.jobs t
    WHERE t.id IN (SELECT h.run_job_id FROM tock.hooks h
                   WHERE h.run_job_id IS NOT NULL
                     AND h.job_id IN (SELECT f.job_id FROM tock.finished_runs f WHERE f.id = ANY (p_runs) AND f.finished_at >= p_now))
    ORDER BY t.id
    FOR SHARE;
    WITH set_off AS (
        SELECT * FROM tock.hooks_set_off(p_runs, p_now)
    ), delivered AS (
        INSERT INTO tock.deliveries (hook_id, job_id, run_id, event, message_id, url, body, max_attempts, next_attempt_at,
                                     created_at)
        SELECT (s.hook).id, (s.run).job_id, (s.run).id, (s.hook).event, format('msg_tock_%s_%s', (s.run).id, (s.hook).id),
               (s.hook).url, tock.webhook_body((s.hook).event, s.run, s.job_name, s.worker_name, p_now, s.will_retry),
               (s.hook).max_attempts, p_now, p_now
        FROM set_off s
        WHERE (s.hook).run_job_id IS NULL
        ON CONFLICT ON CONSTRAINT deliveries_one_per_hook_run_event DO NOTHING
    )
    INSERT INTO tock.runs (job_id, trigger, priority, enqueued_at, run_after, pool, params, upstream)
    SELECT DISTINCT ON ((s.run).id, t.id)
           t.id, 'chain', t.priority, p_now, p_now, t.pool, tock.param_defaults(t.params),
           jsonb_build_object('run_id', (s.run).id, 'job', s.job_name, 'status', (s.run).status,
                              'depth', coalesce(((s.run).upstream ->> 'depth')::int, 0) + 1)
    FROM set_off s
    JOIN tock.jobs t ON t.id = (s.hook).run_job_id
    WHERE t.enabled AND coalesce(((s.run).upstream ->> 'depth')::int, 0) < 20
    ORDER BY (s.run).id, t.id;
END $$;

-- The late hooks' deliveries (tock.rescue, each second): a scheduled run still pending late_after past its fire
-- time. Once per hook and run.
CREATE OR REPLACE FUNCTION tock.enqueue_late_hooks(p_now timestamptz)
RETURNS void LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    INSERT INTO tock.deliveries (hook_id, job_id, run_id, event, message_id, url, body, max_attempts, next_attempt_at,
                                 created_at)
    SELECT h.id, r.job_id, r.id, 'late', format('msg_tock_%s_%s', r.id, h.id), h.url,
           jsonb_build_object(
               'type', 'run.late',
               'timestamp', to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'text', format('Tock: %s run #%s has not started %s after its fire time, %s', j.name, r.id,
                              tock.duration_text(date_trunc('second', p_now - r.scheduled_for)),
                              to_char(r.scheduled_for AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')),
               'data', jsonb_build_object('job', j.name, 'run_id', r.id, 'status', r.status, 'pool', r.pool,
                                          'scheduled_for', r.scheduled_for,
                                          'late_seconds', extract(epoch FROM p_now - r.scheduled_for)::float8))::text,
           h.max_attempts, p_now, p_now
    FROM tock.hooks h
    JOIN tock.runs r ON (r.job_id = h.job_id OR h.job_id IS NULL)
    JOIN tock.jobs j ON j.id = r.job_id
    WHERE h.event = 'late' AND r.status = 'pending' AND r.trigger = 'schedule'
      AND r.scheduled_for < p_now - h.late_after
      AND NOT EXISTS (SELECT 1 FROM tock.deliveries d WHERE d.hook_id = h.id AND d.run_id = r.id AND d.event = 'late')
    -- A bound per second, oldest first: a backlog of late runs is announced over the next seconds.
    ORDER BY r.scheduled_for
    LIMIT 1000
    ON CONFLICT ON CONSTRAINT deliveries_one_per_hook_run_event DO NOTHING;
END $$;

-- New deliveries wake the delivery services (NOTIFY tock_deliveries), once per statement that inserted any (an
-- INSERT … ON CONFLICT DO NOTHING that inserted none fires the trigger too).
CREATE OR REPLACE FUNCTION tock.tg_deliveries__due()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_deliveries) THEN
        PERFORM pg_notify('tock_deliveries', '');
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS deliveries_notify ON tock.deliveries;
CREATE TRIGGER deliveries_notify AFTER INSERT ON tock.deliveries REFERENCING NEW TABLE AS new_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION tock.tg_deliveries__due();

-- Takes up to p_max due deliveries for a delivery service (SKIP LOCKED: any number of them at once) and holds each
-- for p_hold: if its sender has not finished it by then (it died), another sends it again, as the same message.
-- A delivery whose hook was removed meanwhile fails here (it has no secret to be signed with). Returns what to send,
-- and when the next delivery not yet due comes due (NULL: none).
CREATE OR REPLACE FUNCTION tock.claim_deliveries(p_max int, p_hold interval DEFAULT interval '1 minute')
RETURNS TABLE (delivery_id bigint, attempt int, message_id text, url text, body text, secret text,
               next_due timestamptz) LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
BEGIN
    IF p_max IS NULL OR p_max NOT BETWEEN 1 AND 100 THEN
        PERFORM tock.raise_invalid('p_max', 'claim 1 to 100 deliveries at a time');
    END IF;
    IF p_hold IS NULL OR p_hold NOT BETWEEN interval '5 seconds' AND interval '1 hour' THEN
        PERFORM tock.raise_invalid('p_hold', 'hold a delivery 5 seconds to 1 hour');
    END IF;
    UPDATE tock.deliveries d
    SET status = 'failed', finished_at = v_now, last_error = 'its hook was removed'
    WHERE d.status IN ('pending', 'sending') AND d.hook_id IS NULL AND d.next_attempt_at <= v_now;
    -- A last attempt whose sender never answered (it died, each time, perhaps because of this delivery): failed.
    UPDATE tock.deliveries d
    SET status = 'failed', finished_at = v_now,
        last_error = coalesce(d.last_error || '; ', '') || 'its last attempt''s sender stopped before it answered'
    WHERE d.status = 'sending' AND d.next_attempt_at <= v_now AND d.attempts >= d.max_attempts;
    RETURN QUERY
    WITH due AS (
        SELECT d.id FROM tock.deliveries d
        WHERE d.status IN ('pending', 'sending') AND d.next_attempt_at <= v_now
        ORDER BY d.next_attempt_at
        LIMIT p_max
        FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE tock.deliveries d
        SET status = 'sending', attempts = d.attempts + 1, next_attempt_at = v_now + p_hold
        FROM due
        WHERE d.id = due.id
        RETURNING d.id, d.attempts, d.message_id, d.url, d.body, d.hook_id
    )
    SELECT t.id, t.attempts, t.message_id, t.url, t.body, h.secret,
           (SELECT min(n.next_attempt_at) FROM tock.deliveries n WHERE n.status = 'pending' AND n.next_attempt_at > v_now)
    FROM taken t JOIN tock.hooks h ON h.id = t.hook_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, NULL::int, NULL::text, NULL::text, NULL::text, NULL::text,
            (SELECT min(n.next_attempt_at) FROM tock.deliveries n WHERE n.status IN ('pending', 'sending'));
    END IF;
END $$;
COMMENT ON FUNCTION tock.claim_deliveries(int, interval) IS
    'A delivery service takes due webhook deliveries (SKIP LOCKED), held for p_hold; and when the next comes due.';

-- How an attempt went: p_code the receiver's HTTP status (NULL: no answer), p_error why it failed. A 2xx delivers;
-- a 408, 429, 5xx or no answer is tried again after a backoff (2 s, tripling to an hour: with 12 attempts, about
-- 5 hours in all) until max_attempts; any other status, or p_final (the sender refuses the address), fails it at
-- once. Only the attempt the sender holds
-- counts (a sender whose hold ran out and whose delivery was taken again changes nothing). Returns its status.
CREATE OR REPLACE FUNCTION tock.finish_delivery(
    p_delivery bigint, p_attempt int, p_code int, p_error text, p_started_at timestamptz, p_duration_ms float8,
    p_final boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_delivery tock.deliveries;
    v_now constant timestamptz := clock_timestamp();
    v_ok constant boolean := p_error IS NULL AND p_code BETWEEN 200 AND 299;
    v_retry boolean;
BEGIN
    SELECT * INTO v_delivery FROM tock.deliveries WHERE id = p_delivery FOR UPDATE;
    IF NOT FOUND OR v_delivery.status <> 'sending' OR v_delivery.attempts <> p_attempt THEN
        RETURN coalesce(v_delivery.status, 'unknown');
    END IF;
    p_error := left(p_error, 1000);
    INSERT INTO tock.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error)
    VALUES (p_delivery, p_attempt, coalesce(p_started_at, v_now), p_duration_ms, p_code,
            CASE WHEN v_ok THEN NULL ELSE coalesce(p_error, format('the receiver answered %s', p_code)) END)
    ON CONFLICT DO NOTHING;
    v_retry := NOT v_ok AND NOT coalesce(p_final, false) AND p_attempt < v_delivery.max_attempts
               AND (p_code IS NULL OR p_code IN (408, 429) OR p_code >= 500);
    UPDATE tock.deliveries
    SET status = CASE WHEN v_ok THEN 'delivered' WHEN v_retry THEN 'pending' ELSE 'failed' END,
        last_code = p_code,
        last_error = CASE WHEN v_ok THEN NULL ELSE coalesce(p_error, format('the receiver answered %s', p_code)) END,
        next_attempt_at = CASE WHEN v_retry
                               THEN v_now + make_interval(secs => least(2 * power(3, least(p_attempt - round_start - 1, 20)), 3600)
                                                                  * (0.75 + random() * 0.5))
                               ELSE next_attempt_at END,
        finished_at = CASE WHEN v_ok OR NOT v_retry THEN v_now END
    WHERE id = p_delivery;
    RETURN CASE WHEN v_ok THEN 'delivered' WHEN v_retry THEN 'pending' ELSE 'failed' END;
END $$;
COMMENT ON FUNCTION tock.finish_delivery(bigint, int, int, text, timestamptz, float8, boolean) IS
    'How a delivery attempt went: delivered, pending (a retry after a backoff) or failed; only the attempt its sender holds counts.';

-- Sends a delivery again (a failed one, or one still waiting, at once), with as many attempts again as its hook
-- allows. Returns its status: pending.
CREATE OR REPLACE FUNCTION tock.retry_delivery(p_delivery bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT d.status INTO v_status FROM tock.deliveries d WHERE d.id = p_delivery FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery: unknown delivery %', p_delivery USING ERRCODE = 'no_data_found', COLUMN = 'delivery';
    END IF;
    IF v_status IN ('delivered', 'sending') THEN
        RAISE EXCEPTION 'delivery % is %: only a failed or waiting delivery is sent again', p_delivery, v_status
            USING ERRCODE = 'object_not_in_prerequisite_state', COLUMN = 'delivery';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tock.deliveries d JOIN tock.hooks h ON h.id = d.hook_id WHERE d.id = p_delivery) THEN
        RAISE EXCEPTION 'delivery %: its hook was removed, so it cannot be signed', p_delivery
            USING ERRCODE = 'object_not_in_prerequisite_state', COLUMN = 'delivery';
    END IF;
    UPDATE tock.deliveries d
    SET status = 'pending', next_attempt_at = clock_timestamp(), finished_at = NULL, round_start = d.attempts,
        max_attempts = d.attempts + (SELECT h.max_attempts FROM tock.hooks h WHERE h.id = d.hook_id)
    WHERE d.id = p_delivery;
    PERFORM pg_notify('tock_deliveries', '');
    PERFORM tock.audit_write('delivery.retry', d.job_id, j.name, d.run_id, jsonb_build_object('status', v_status),
                             jsonb_build_object('delivery_id', d.id, 'status', 'pending'))
    FROM tock.deliveries d LEFT JOIN tock.jobs j ON j.id = d.job_id WHERE d.id = p_delivery;
    RETURN 'pending';
END $$;
COMMENT ON FUNCTION tock.retry_delivery(bigint) IS
    'Sends a webhook delivery again (a failed one, or one still waiting, at once) with its hook''s attempts; returns pending.';

-- The deliveries, as people may see them: the URL's origin alone, and never the secret.
CREATE OR REPLACE VIEW tock.delivery_overview AS
SELECT d.id, d.hook_id, d.job_id, j.name AS job_name, d.run_id, d.event, d.message_id, tock.url_origin(d.url) AS url_origin,
       d.status, d.attempts, d.max_attempts,
       CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
       d.last_code, d.last_error, d.created_at, d.finished_at
FROM tock.deliveries d
LEFT JOIN tock.jobs j ON j.id = d.job_id;
COMMENT ON VIEW tock.delivery_overview IS
    'Webhook deliveries: pending, sending, delivered or failed, with attempts and the last answer (tock.delivery_attempts for each).';

-- A job's hooks and the fleet's, which apply to it too (p_job, by name or id), or every hook (at most 1,000);
-- oldest first.
CREATE OR REPLACE FUNCTION tock.job_hooks(p_job text DEFAULT NULL)
RETURNS SETOF tock.hook_list LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_job constant bigint := CASE WHEN p_job IS NOT NULL THEN tock.find_job(p_job) END;
BEGIN
    RETURN QUERY SELECT * FROM tock.hook_list h
    WHERE p_job IS NULL OR h.job_id = v_job OR h.job_id IS NULL
    ORDER BY h.id LIMIT 1000;
END $$;
COMMENT ON FUNCTION tock.job_hooks(text) IS
    'The hooks that apply to a job (its own and the fleet''s), or every hook (at most 1,000), oldest first.';

-- Deliveries newest first, each filter optional: of a job, of a run, in a status, with ids below p_before (paging);
-- at most p_limit (1-1,000). A status or limit out of range is refused, naming it.
CREATE OR REPLACE FUNCTION tock.delivery_page(p_job text DEFAULT NULL, p_run bigint DEFAULT NULL,
                                              p_status text DEFAULT NULL, p_before bigint DEFAULT NULL,
                                              p_limit int DEFAULT 100)
RETURNS SETOF tock.delivery_overview LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_job constant bigint := CASE WHEN p_job IS NOT NULL THEN tock.find_job(p_job) END;
BEGIN
    IF p_status IS NOT NULL AND p_status NOT IN ('pending', 'sending', 'delivered', 'failed') THEN
        PERFORM tock.raise_invalid('status', format('%L is not pending, sending, delivered or failed', left(p_status, 40)));
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('limit', format('%s is out of range 1-1000', coalesce(p_limit::text, 'NULL')));
    END IF;
    RETURN QUERY SELECT * FROM tock.delivery_overview d
    WHERE (v_job IS NULL OR d.job_id = v_job) AND (p_run IS NULL OR d.run_id = p_run)
      AND (p_status IS NULL OR d.status = p_status) AND (p_before IS NULL OR d.id < p_before)
    ORDER BY d.id DESC LIMIT p_limit;
END $$;
COMMENT ON FUNCTION tock.delivery_page(text, bigint, text, bigint, int) IS
    'Webhook deliveries newest first: of a job, a run, a status, ids below p_before; at most p_limit (1-1,000).';

-- Each attempt of each delivery: when, how long, the receiver's status or why it failed.
CREATE OR REPLACE VIEW tock.delivery_attempt_log AS
SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status_code, a.error
FROM tock.delivery_attempts a;
COMMENT ON VIEW tock.delivery_attempt_log IS 'Each attempt to send a webhook delivery, and how it went.';
