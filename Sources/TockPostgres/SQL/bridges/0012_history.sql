-- In migration 0012_history's transaction, after it: the functions of the release before it that would meet the
-- new tables and either fail with an error naming a column (a finish, a cancel, the history's purge) or, worse, go
-- on without the new bookkeeping (a claim that takes no lease, so its run is never rescued; a requeue that leaves
-- its lease behind; a worker stopped while it still holds runs; a retention with partitions of the wrong width).
-- Until the functions step that ends every `tock migrate` replaces them, a worker, scheduler or portal of that
-- release calling one gets this error instead, and retries; run-now and the schedules' firing work on the new
-- tables as they are and stay.
DO $$
DECLARE
    v_function record;
BEGIN
    FOR v_function IN
        SELECT p.oid, p.proname, p.prokind
        FROM pg_proc p
        WHERE p.pronamespace = 'tock'::regnamespace
          AND p.proname IN ('claim_runs', 'requeue_runs', 'release_run', 'finish_runs', 'finish_run', 'end_attempt',
                            'cancel', 'retry', 'rescue', 'purge_history', 'reset_job', 'stats', 'gauges',
                            'run_detail', 'tg_jobs__deleted', 'set_worker_state', 'set_history_retention')
    LOOP
        EXECUTE format(
            'CREATE OR REPLACE %s tock.%I(%s) %s LANGUAGE plpgsql AS %L',
            CASE v_function.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, v_function.proname,
            pg_get_function_arguments(v_function.oid),
            CASE WHEN v_function.prokind <> 'p' THEN 'RETURNS ' || pg_get_function_result(v_function.oid) END,
            format('BEGIN PERFORM tock.refuse_while_upgrading(%L); END', 'tock.' || v_function.proname));
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION tock.refuse_while_upgrading(p_what text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
        MESSAGE = format('%s is being upgraded: tock migrate has moved the runs to the tables of migration '
                         '0012_history and applies the functions that use them last', p_what),
        HINT = 'Retry in a few seconds; if it goes on, run tock migrate again to finish the upgrade.';
END $$;

-- A call of the release before that was already under way when this commits (its statement waiting for the lock
-- 0012 holds on tock.runs) keeps its old body and, its table looked up again, goes on against the new one: a claim
-- would leave its runs running with no lease, a requeue its leases behind. Nothing else changes a run's status
-- before the functions step, which drops this trigger.
CREATE OR REPLACE FUNCTION tock.tg_runs__refused_while_upgrading()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tock.refuse_while_upgrading('tock.runs');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER runs_refused_while_upgrading
    BEFORE UPDATE OF status ON tock.runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION tock.tg_runs__refused_while_upgrading();
