-- Recurrence-free survival after GIST resection, as known by :as_of: event = 1 with the
-- recurrence time when one was recorded by then; otherwise censored at the last follow-up
-- recorded by then (a follow-up after :as_of is not yet known: censored at :as_of instead).
SELECT
    i.stay_id,
    i.subject_id,
    CASE WHEN r.event_time IS NOT NULL AND r.event_time <= :as_of THEN r.event_time
         WHEN f.event_time <= :as_of THEN f.event_time
         ELSE :as_of END AS label_known_time,
    CASE WHEN r.event_time IS NOT NULL AND r.event_time <= :as_of THEN r.event_time
         WHEN f.event_time <= :as_of THEN f.event_time
         ELSE :as_of END AS event_time,
    CASE WHEN r.event_time IS NOT NULL AND r.event_time <= :as_of THEN 1 ELSE 0 END AS event
FROM mimiciv_icu.icustays i
JOIN vigil_features.outcome_events c ON c.stay_id = i.stay_id AND c.outcome = 'cohort_gist_resection'
JOIN vigil_features.outcome_events f ON f.stay_id = i.stay_id AND f.outcome = 'gist_last_follow_up'
LEFT JOIN vigil_features.outcome_events r ON r.stay_id = i.stay_id AND r.outcome = 'gist_recurrence'
WHERE c.event_time <= :as_of
