-- Stays enrolled in the gist_resection cohort (a registry's enrolment, vigil_features.outcome_events),
-- with the time of enrolment: a stay is scored by the model from then on.
SELECT c.stay_id, c.event_time AS enrolled_time
FROM vigil_features.outcome_events c
WHERE c.outcome = 'cohort_gist_resection'
  AND c.event_time <= :as_of
