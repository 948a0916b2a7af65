-- The audit log (migration 0026): every change of state people make, written by the SQL that makes it, in its
-- transaction. Triggers record the tables people change (jobs, config, pools, hooks), whoever changes them and
-- however (a function, the API, plain UPDATE); the functions that act on runs (run now, cancel, retry, bulk
-- actions, reset) record themselves. What the engine does on its own (the scheduler advancing next_run_at,
-- automatic retries, the retention) is not a person's change and is not recorded.
--
-- Who: the caller names itself in the transaction's setting tock.actor ('api:<token name>', 'cli:<OS user>'),
-- which `tock` sets for the API and the CLI; without it, the database login. A SQL caller may set tock.actor to
-- anything it likes, so the login (db_role, session_user) is recorded beside it: that one PostgreSQL checked.

-- The caller as the audit log names it: (actor, via). Bounded and stripped of control characters: it is the
-- caller's own text.
CREATE OR REPLACE FUNCTION tock.audit_actor(OUT actor text, OUT via text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_claim constant text := left(regexp_replace(coalesce(current_setting('tock.actor', true), ''),
                                                 '[\u0001-\u001f\u007f-\u009f]', '', 'g'), 200);
BEGIN
    IF v_claim ~ '^(api|cli):.' THEN
        via := split_part(v_claim, ':', 1);
        actor := substr(v_claim, length(via) + 2);
    ELSE
        via := 'sql';
        actor := session_user;
    END IF;
END $$;

-- Records one change. p_before and p_after: the values that changed (a creation has no before, a deletion no after).
CREATE OR REPLACE FUNCTION tock.audit_write(p_action text, p_job_id bigint, p_job_name text, p_run_id bigint,
                                            p_before jsonb, p_after jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO tock.audit (actor, via, db_role, action, job_id, job_name, run_id, before, after)
    SELECT a.actor, a.via, session_user, p_action, p_job_id, p_job_name, p_run_id, p_before, p_after
    FROM tock.audit_actor() a
$$;

-- The keys of p_old and p_new whose values differ, as (before, after) objects of those keys alone.
CREATE OR REPLACE FUNCTION tock.audit_diff(p_old jsonb, p_new jsonb, OUT before jsonb, OUT after jsonb)
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, p_old -> k) FILTER (WHERE p_old ? k), '{}'),
           coalesce(jsonb_object_agg(k, p_new -> k) FILTER (WHERE p_new ? k), '{}')
    FROM (SELECT k FROM jsonb_object_keys(p_old || p_new) k
          WHERE (p_old -> k) IS DISTINCT FROM (p_new -> k)) d
$$;

-- The columns of tock.jobs the engine keeps, not people: the scheduler's next fire time, the parsed schedule and
-- its description, timestamps.
CREATE OR REPLACE FUNCTION tock.engine_job_columns()
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['next_run_at', 'updated_at', 'created_at', 'spec', 'schedule_description', 'anchor_at']
$$;

-- What a row of a table people change says about itself in the log: the fields people set, not those the engine
-- keeps (a job's next fire time, parsed schedule, timestamps), and never a hook's secret or its URL's path (a
-- Slack webhook's path is a secret too: the origin stands in for it).
CREATE OR REPLACE FUNCTION tock.audit_fields(p_table text, p_row jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_table
        WHEN 'jobs' THEN p_row - tock.engine_job_columns()
        WHEN 'hooks' THEN (p_row - ARRAY['secret', 'url', 'created_at'])
                          || jsonb_build_object('origin', tock.url_origin(p_row ->> 'url'))
        ELSE p_row - ARRAY['updated_at', 'id']
    END
$$;

-- The trigger on jobs, config, pools and hooks: one entry per row people changed, none for a change the engine
-- made to fields of its own (audit_fields leaves them out, so such an update changes nothing there).
CREATE OR REPLACE FUNCTION tock.tg_audit()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_old jsonb := CASE WHEN TG_OP <> 'INSERT' THEN tock.audit_fields(TG_TABLE_NAME, to_jsonb(OLD)) END;
    v_new jsonb := CASE WHEN TG_OP <> 'DELETE' THEN tock.audit_fields(TG_TABLE_NAME, to_jsonb(NEW)) END;
    v_diff record;
    v_action text;
    v_job_id bigint;
    v_job_name text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        v_diff := tock.audit_diff(v_old, v_new);
        IF v_diff.after = '{}' AND v_diff.before = '{}' THEN
            RETURN NULL;
        END IF;
        v_old := v_diff.before;
        v_new := v_diff.after;
    END IF;
    CASE TG_TABLE_NAME
    WHEN 'jobs' THEN
        v_job_id := coalesce(NEW.id, OLD.id);
        v_job_name := coalesce(NEW.name, OLD.name);
        v_action := CASE TG_OP WHEN 'INSERT' THEN 'job.create' WHEN 'DELETE' THEN 'job.delete'
                               ELSE CASE WHEN v_new = jsonb_build_object('enabled', false) THEN 'job.pause'
                                         WHEN v_new = jsonb_build_object('enabled', true) THEN 'job.resume'
                                         ELSE 'job.update' END END;
    WHEN 'hooks' THEN
        v_job_id := coalesce(NEW.job_id, OLD.job_id);
        v_job_name := (SELECT j.name FROM tock.jobs j WHERE j.id = v_job_id);
        v_action := CASE TG_OP WHEN 'INSERT' THEN 'hook.add' WHEN 'DELETE' THEN 'hook.remove' ELSE 'hook.update' END;
    WHEN 'pools' THEN
        v_action := 'pool.set';
        v_new := coalesce(v_new, '{}') || jsonb_build_object('name', coalesce(NEW.name, OLD.name));
    ELSE
        v_action := 'config.set';
    END CASE;
    PERFORM tock.audit_write(v_action, v_job_id, v_job_name, NULL, v_old, v_new);
    RETURN NULL;
END $$;

-- On tock.jobs, an update fires it only when it sets a column people set (UPDATE OF every other column, listed
-- here from the catalog, so a column a later migration adds is covered when the functions are applied after it):
-- the scheduler's update of next_run_at on every fire costs nothing more.
DROP TRIGGER IF EXISTS jobs_audit ON tock.jobs;
DROP TRIGGER IF EXISTS jobs_audit_update ON tock.jobs;
CREATE TRIGGER jobs_audit AFTER INSERT OR DELETE ON tock.jobs
    FOR EACH ROW EXECUTE FUNCTION tock.tg_audit();
DO $$
BEGIN
    EXECUTE format('CREATE TRIGGER jobs_audit_update AFTER UPDATE OF %s ON tock.jobs FOR EACH ROW EXECUTE FUNCTION tock.tg_audit()',
        (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
         FROM pg_attribute a
         WHERE a.attrelid = 'tock.jobs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname <> ALL (tock.engine_job_columns())));
END $$;
DROP TRIGGER IF EXISTS config_audit ON tock.config;
CREATE TRIGGER config_audit AFTER UPDATE ON tock.config
    FOR EACH ROW EXECUTE FUNCTION tock.tg_audit();
DROP TRIGGER IF EXISTS pools_audit ON tock.pools;
CREATE TRIGGER pools_audit AFTER INSERT OR UPDATE OR DELETE ON tock.pools
    FOR EACH ROW EXECUTE FUNCTION tock.tg_audit();
DROP TRIGGER IF EXISTS hooks_audit ON tock.hooks;
CREATE TRIGGER hooks_audit AFTER INSERT OR UPDATE OR DELETE ON tock.hooks
    FOR EACH ROW EXECUTE FUNCTION tock.tg_audit();

-- The log as people read it, newest first by id.
CREATE OR REPLACE VIEW tock.audit_log AS
SELECT a.id, a.at, a.actor, a.via, a.db_role, a.action, a.job_id, a.job_name, a.run_id, a.before, a.after
FROM tock.audit a
WHERE a.at >= now() - (SELECT c.audit_retention FROM tock.config c);
COMMENT ON VIEW tock.audit_log IS
    'Who changed what and when: job create/update/pause/resume/delete/reset, run trigger/cancel/retry, bulk actions, config, pools, hooks.';

-- A page of the log, newest first: one job's entries (by name, or by id for a job renamed or deleted since: its
-- entries keep the id), one actor's, one action's (or a prefix: 'job.'), with ids below p_before, at most p_limit.
CREATE OR REPLACE FUNCTION tock.audit_page(p_job text DEFAULT NULL, p_actor text DEFAULT NULL, p_action text DEFAULT NULL,
                                           p_before bigint DEFAULT NULL, p_limit int DEFAULT 50)
RETURNS SETOF tock.audit_log LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    v_job bigint;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM tock.raise_invalid('limit', format('%s is not from 1 to 1000', p_limit));
    END IF;
    IF p_job IS NOT NULL THEN
        v_job := coalesce((SELECT j.id FROM tock.jobs j WHERE j.name = p_job),
                          (SELECT a.job_id FROM tock.audit a WHERE a.job_name = p_job ORDER BY a.id DESC LIMIT 1),
                          CASE WHEN p_job ~ '^[0-9]{1,18}$' THEN p_job::bigint END);
        IF v_job IS NULL THEN
            RAISE EXCEPTION 'job: unknown job %', left(p_job, 100) USING ERRCODE = 'no_data_found', COLUMN = 'job';
        END IF;
    END IF;
    RETURN QUERY EXECUTE format('
        SELECT * FROM tock.audit_log a WHERE true %s %s %s %s ORDER BY a.id DESC LIMIT $5',
        CASE WHEN v_job IS NOT NULL THEN 'AND a.job_id = $1' END,
        CASE WHEN p_actor IS NOT NULL THEN 'AND a.actor = $2' END,
        CASE WHEN p_action IS NULL THEN '' WHEN p_action LIKE '%.' THEN 'AND starts_with(a.action, $3)' ELSE 'AND a.action = $3' END,
        CASE WHEN p_before IS NOT NULL THEN 'AND a.id < $4' END)
    USING v_job, p_actor, p_action, p_before, p_limit;
END $$;
COMMENT ON FUNCTION tock.audit_page(text, text, text, bigint, int) IS
    'tock.audit_log newest first: of one job, one actor, one action (or ''job.'' for a kind), ids below p_before, at most p_limit (1000).';

-- Drops entries past the audit retention, oldest first, at most p_batch; returns how many.
CREATE OR REPLACE FUNCTION tock.purge_audit(p_now timestamptz DEFAULT now(), p_batch int DEFAULT 10000)
RETURNS int LANGUAGE sql AS $$
    WITH old AS (
        SELECT a.id FROM tock.audit a
        WHERE a.at < p_now - (SELECT c.audit_retention FROM tock.config c)
        ORDER BY a.at LIMIT p_batch
    ), gone AS (
        DELETE FROM tock.audit a USING old WHERE a.id = old.id RETURNING 1
    )
    SELECT count(*)::int FROM gone
$$;

-- Records a change to one run (trigger, cancel, retry), naming its job: p_job when the caller knows it (run-now is
-- on the path to a script starting: no lookup of the run), else the run's. PL/pgSQL, so that the lookup is not
-- planned when p_job is given: planned, it locks the history and each of its partitions, and a run-now then
-- waited behind a partition's drop (up to 2 s) and could deadlock with it.
DROP FUNCTION IF EXISTS tock.audit_run(text, bigint, jsonb, jsonb);
CREATE OR REPLACE FUNCTION tock.audit_run(p_action text, p_run bigint, p_before jsonb, p_after jsonb, p_job bigint DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_job IS NULL THEN
        p_job := coalesce((SELECT r.job_id FROM tock.runs r WHERE r.id = p_run),
                          (SELECT f.job_id FROM tock.finished_runs f WHERE f.id = p_run));
    END IF;
    PERFORM tock.audit_write(p_action, j.id, j.name, p_run, p_before, p_after) FROM tock.jobs j WHERE j.id = p_job;
END $$;
