-- Label for sepsis onset within a horizon after each prediction time: every ICU stay that has
-- ended by :as_of (its outcome is then known), with its sepsis onset time when it had one
-- (vigil_features.outcome_events, loaded from PhysioNet 2019's SepsisLabel). The horizon and
-- the prediction times come from the model spec.
SELECT
    i.stay_id,
    i.subject_id,
    i.outtime       AS label_known_time,
    o.event_time
FROM mimiciv_icu.icustays i
LEFT JOIN vigil_features.outcome_events o
       ON o.stay_id = i.stay_id AND o.outcome = 'sepsis_onset'
WHERE i.outtime IS NOT NULL
  AND i.outtime <= :as_of
