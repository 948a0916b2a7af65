-- Who may do what. Three NOLOGIN roles; a DBA gives them to login roles (CREATE ROLE … LOGIN IN ROLE tock_worker):
--   tock_viewer  reads the views (job_overview, run_history and its halves, run_logs, history_partitions,
--                worker_overview, queue_depth, lag, stuck_runs, job_stats) and the read-only functions (stats, schedule_preview, next_fire_times, …);
--   tock_worker  only what a worker process needs: register, heartbeat, claim, report output, finish, release;
--   tock_admin   manages jobs and runs (create, edit, pause, delete, run now, cancel, retry, reset) and hooks, runs
--                the scheduler (tick, rescue, purge), the delivery service and the API server; it is a member of
--                tock_viewer.
-- No role may touch the tables: every granted function is SECURITY DEFINER with a fixed search_path, so it acts as
-- the schema's owner and only does what it says. Everything is revoked from PUBLIC, so a login role with none of
-- the three cannot use Tock at all. This file runs whenever `tock migrate` applies the functions (they changed), so
-- new functions are covered.

-- The entry points each role may call. A function listed here is made SECURITY DEFINER; helpers not listed stay
-- callable only by the owner and from inside these.
CREATE OR REPLACE FUNCTION tock.role_functions()
RETURNS TABLE (role_name text, function_name text) LANGUAGE sql IMMUTABLE AS $$
    SELECT 'tock_viewer', unnest(ARRAY[
        'find_job', 'describe_schedule', 'next_fire_times', 'schedule_preview', 'stats', 'queue_glance', 'schedulers_alive',
        'gauges', 'list_jobs', 'recent_runs', 'job_runs', 'run_detail', 'rate_text', 'duration_text', 'url_origin',
        'find_runs', 'find_runs_page', 'count_runs', 'failure_groups', 'activity', 'audit_page', 'live_worker_pools', 'workers_serving',
        'job_hooks', 'delivery_page', 'ended_counts'])
    UNION ALL
    SELECT 'tock_worker', unnest(ARRAY[
        'register_worker', 'heartbeat', 'set_worker_state', 'claim_runs', 'report_output', 'finish_run', 'finish_runs',
        'release_run', 'cancel_requests', 'next_delayed_run', 'worker_lock_key', 'hold_worker_session'])
    UNION ALL
    SELECT 'tock_admin', unnest(ARRAY[
        'create_job', 'create_job_json', 'update_job', 'set_job_enabled', 'pause_job', 'resume_job', 'delete_job',
        'run_now', 'run_now_keyed', 'cancel', 'retry', 'reset_job', 'tick', 'rescue', 'purge_history', 'set_history_retention',
        'scheduler_lock_key', 'set_pool', 'set_config', 'set_config_json', 'add_hook', 'add_hook_json', 'remove_hook',
        'retry_delivery', 'claim_deliveries', 'finish_delivery', 'bulk_runs'])
$$;

-- Creates the roles where this user may (CREATEROLE), then (re)grants. Without CREATEROLE it warns and grants what
-- it can: a DBA creates the missing roles (docs/operations.md, "Roles") and runs SELECT tock.apply_privileges().
-- Returns the roles still missing (empty when all is in place).
CREATE OR REPLACE FUNCTION tock.apply_privileges()
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_role text;
    v_missing text[] := '{}';
    v_function record;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['tock_viewer', 'tock_worker', 'tock_admin'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXCEPTION
            WHEN insufficient_privilege THEN
                v_missing := v_missing || v_role;
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database in this cluster
        END;
    END LOOP;
    IF cardinality(v_missing) > 0 THEN
        RAISE WARNING 'roles % do not exist and % may not create them', v_missing, current_user
            USING HINT = 'a DBA runs CREATE ROLE tock_admin NOLOGIN (and tock_worker, tock_viewer), then SELECT tock.apply_privileges()';
    END IF;

    EXECUTE 'REVOKE ALL ON SCHEMA tock FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA tock FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA tock FROM PUBLIC';
    EXECUTE 'REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tock FROM PUBLIC';
    EXECUTE 'REVOKE EXECUTE ON ALL PROCEDURES IN SCHEMA tock FROM PUBLIC';

    FOR v_function IN
        SELECT p.oid::regprocedure AS signature, f.role_name
        FROM pg_proc p JOIN tock.role_functions() f ON f.function_name = p.proname
        WHERE p.pronamespace = 'tock'::regnamespace
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', v_function.signature);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_function.role_name) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_function.signature, v_function.role_name);
        END IF;
    END LOOP;

    FOREACH v_role IN ARRAY ARRAY['tock_viewer', 'tock_worker', 'tock_admin'] LOOP
        CONTINUE WHEN v_role = ANY (v_missing);
        EXECUTE format('GRANT USAGE ON SCHEMA tock TO %I', v_role);
    END LOOP;
    -- Procedures that commit run as their caller (tock.claim_committed says why); what they call is granted above.
    IF NOT 'tock_worker' = ANY (v_missing) THEN
        EXECUTE 'GRANT EXECUTE ON PROCEDURE tock.claim_committed(bigint, int, text, bigint[], bigint[], text[], text[],
                 text[], float8[], int[], text[], float8[]) TO tock_worker';
        EXECUTE 'GRANT EXECUTE ON PROCEDURE tock.claim_committed(bigint, int, text, bigint[], bigint[], text[], text[],
                 text[], float8[], int[], text[], float8[], timestamptz) TO tock_worker';
        EXECUTE 'GRANT EXECUTE ON PROCEDURE tock.claim_committed(bigint, int, text, bigint[], bigint[], text[], text[],
                 text[], float8[], int[], text[], float8[], timestamptz, text[]) TO tock_worker';
        EXECUTE 'GRANT EXECUTE ON PROCEDURE tock.finish_committed(bigint, text, bigint[], text[], bigint[], text[], text[],
                 bigint[], boolean[], bigint[]) TO tock_worker';
    END IF;
    IF NOT 'tock_viewer' = ANY (v_missing) THEN
        EXECUTE 'GRANT SELECT ON tock.job_overview, tock.run_history, tock.run_logs, tock.worker_overview, tock.pool_overview, tock.config_settings,
                 tock.queue_depth, tock.lag, tock.stuck_runs, tock.job_stats, tock.migrations, tock.config,
                 tock.timezones, tock.history_partitions, tock.run_history_in_flight, tock.run_history_finished,
                 tock.hook_list, tock.delivery_overview, tock.delivery_attempt_log, tock.audit_log
                 TO tock_viewer';
        IF NOT 'tock_admin' = ANY (v_missing)
           AND NOT pg_has_role('tock_admin', 'tock_viewer', 'MEMBER') THEN
            BEGIN
                EXECUTE 'GRANT tock_viewer TO tock_admin';
            EXCEPTION
                WHEN insufficient_privilege THEN
                    RAISE WARNING '% may not make tock_admin a member of tock_viewer', current_user
                        USING HINT = 'a DBA runs GRANT tock_viewer TO tock_admin';
                WHEN unique_violation THEN
                    NULL;  -- granted meanwhile by a migration of another database in this cluster
            END;
        END IF;
    END IF;
    RETURN v_missing;
END $$;
COMMENT ON FUNCTION tock.apply_privileges() IS
    'Creates tock_admin, tock_worker and tock_viewer where allowed and grants each its functions; returns roles still missing.';

SELECT tock.apply_privileges();
