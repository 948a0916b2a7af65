-- In migration 0018_limits' transaction, after it: a claim of the release before writes its leases without the pool
-- and job this migration gave them, so the limits (35_limits.sql) would not count its runs as running while they
-- run, and neither would the job list. Until the functions step replaces that claim (and drops this trigger), each
-- such lease takes them from its run, which cannot change either while it is in flight.
CREATE OR REPLACE FUNCTION tock.tg_run_leases__completed_while_upgrading()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pool IS NULL OR NEW.job_id IS NULL THEN
        SELECT coalesce(NEW.pool, r.pool), coalesce(NEW.job_id, r.job_id) INTO NEW.pool, NEW.job_id
        FROM tock.runs r WHERE r.id = NEW.run_id;
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER run_leases_completed_while_upgrading
    BEFORE INSERT ON tock.run_leases
    FOR EACH ROW EXECUTE FUNCTION tock.tg_run_leases__completed_while_upgrading();
