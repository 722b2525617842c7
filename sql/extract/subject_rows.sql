-- How many event rows of each subject arrived in (:since, :until], with every subject that has
-- an ICU stay admitted by :until (0 rows when none arrived), for cutting an extraction into
-- shards of about equal rows (pipeline/sources/mimic.py: subject_shards). Rows of patients
-- without an ICU stay count too: a shard of subjects reads them, and excludes them.
SELECT subject_id, CAST(SUM(n_rows) AS BIGINT) AS n_rows
FROM (
    SELECT i.subject_id, 0 AS n_rows
    FROM mimiciv_icu.icustays i
    WHERE i.intime <= :until OR i.intime IS NULL
    UNION ALL
    SELECT c.subject_id, COUNT(*) AS n_rows
    FROM mimiciv_icu.chartevents c
    WHERE COALESCE(c.storetime, c.charttime) > :since AND COALESCE(c.storetime, c.charttime) <= :until
    GROUP BY c.subject_id
    UNION ALL
    SELECT o.subject_id, COUNT(*) AS n_rows
    FROM mimiciv_icu.outputevents o
    WHERE COALESCE(o.storetime, o.charttime) > :since AND COALESCE(o.storetime, o.charttime) <= :until
    GROUP BY o.subject_id
    UNION ALL
    SELECT l.subject_id, COUNT(*) AS n_rows
    FROM mimiciv_hosp.labevents l
    WHERE COALESCE(l.storetime, l.charttime) > :since AND COALESCE(l.storetime, l.charttime) <= :until
    GROUP BY l.subject_id
) counted
GROUP BY subject_id
