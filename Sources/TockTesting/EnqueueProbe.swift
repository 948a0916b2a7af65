import PostgresNIO

/// Every scheduled run `tock.tick` offers to `tock.runs`, recorded before the unique index on (job, fire time) can
/// drop a repeat. The tick inserts with `ON CONFLICT … DO NOTHING`, so a count of `tock.runs` cannot show a fire
/// time enqueued twice: the index swallows the second. A row-level BEFORE INSERT trigger fires for every row
/// offered, those the conflict then discards included, so counting what it records proves the tick's own locking
/// (`FOR UPDATE SKIP LOCKED` on the due jobs, advanced in the same statement).
public enum EnqueueProbe {
    /// Installs the trigger on the database `client` is connected to (as the schema's owner: the tests' login).
    public static func install(_ client: PostgresClient) async throws {
        let statements = [
            """
            CREATE TABLE public.tock_test_enqueues (
                job_id bigint NOT NULL, scheduled_for timestamptz, backend int NOT NULL DEFAULT pg_backend_pid())
            """,
            """
            CREATE FUNCTION public.tock_test_record_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.trigger = 'schedule' THEN
                    INSERT INTO public.tock_test_enqueues (job_id, scheduled_for) VALUES (NEW.job_id, NEW.scheduled_for);
                END IF;
                RETURN NEW;
            END $$
            """,
            """
            CREATE TRIGGER tock_test_record_enqueue BEFORE INSERT ON tock.runs
            FOR EACH ROW EXECUTE FUNCTION public.tock_test_record_enqueue()
            """,
        ]
        for statement in statements {
            _ = try await client.query(PostgresQuery(unsafeSQL: statement)).collect()
        }
    }

    public struct Tally: Sendable, CustomStringConvertible {
        /// Scheduled rows offered to tock.runs, kept or not.
        public var offered: Int
        /// (job, fire time) pairs offered more than once: each is a fire time two ticks both took.
        public var repeated: Int
        /// A few of them, for the failure message.
        public var examples: [String]

        public var description: String {
            "\(offered) scheduled runs offered, \(repeated) fire times offered more than once \(examples)"
        }
    }

    public static func tally(_ client: PostgresClient) async throws -> Tally {
        let rows = try await client.query("""
            WITH per_fire AS (
                SELECT job_id, scheduled_for, count(*) AS n, count(DISTINCT backend) AS backends
                FROM public.tock_test_enqueues GROUP BY job_id, scheduled_for)
            SELECT (SELECT count(*)::int FROM public.tock_test_enqueues),
                   count(*) FILTER (WHERE n > 1)::int,
                   coalesce((array_agg('job ' || job_id || ' at ' || scheduled_for || ': ' || n || ' times from '
                                       || backends || ' sessions') FILTER (WHERE n > 1))[1:5], '{}')
            FROM per_fire
            """).decode((Int, Int, [String]).self).all()
        let (offered, repeated, examples) = rows.first ?? (0, 0, [])
        return Tally(offered: offered, repeated: repeated, examples: examples)
    }
}
