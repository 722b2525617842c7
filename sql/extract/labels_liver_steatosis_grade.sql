-- Steatosis grade S0-S3 (0-3), from the registry's graded report (vigil_features.outcome_events
-- 'steatosis_grade'), known once reported by :as_of.
SELECT
    i.stay_id,
    i.subject_id,
    g.event_time AS label_known_time,
    CAST(g.value AS INTEGER) AS label
FROM mimiciv_icu.icustays i
JOIN vigil_features.outcome_events g ON g.stay_id = i.stay_id AND g.outcome = 'steatosis_grade'
WHERE g.event_time <= :as_of
  AND g.value IS NOT NULL
