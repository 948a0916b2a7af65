-- 0028_weekly_partitions: a history kept 28 days or more is partitioned by week, no longer by day until 90 days.
--
-- The width stays at most a quarter of the retention (a run past it waits at most that long for its partition to
-- go), but the default 30 days now makes 5 partitions instead of 30. Every lookup that cannot name a partition
-- probes each one: a job's newest run on the jobs page (one probe per partition per job), a run by id. New
-- partitions take the new width from here on; those already made keep theirs, and tock.add_history_partitions
-- makes the rest of a week that they only partly cover.
CREATE OR REPLACE FUNCTION tock.history_partition_width(p_retention interval)
RETURNS interval LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_retention >= interval '28 days' THEN interval '7 days'
                WHEN p_retention >= interval '4 days' THEN interval '1 day'
                WHEN p_retention >= interval '4 hours' THEN interval '1 hour'
                ELSE interval '1 minute' END
$$;
UPDATE tock.config SET history_partition = tock.history_partition_width(history_retention);
