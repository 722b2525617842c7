-- 3-class outcome of pulmonary embolism treated with thrombolysis, known once the hospital
-- admission has ended by :as_of: 1 = died in hospital, 2 = major bleeding (and survived),
-- 0 = neither. Bleeding events are registry rows (vigil_features.outcome_events).
SELECT
    i.stay_id,
    i.subject_id,
    a.dischtime AS label_known_time,
    CASE WHEN a.hospital_expire_flag = 1 OR a.deathtime IS NOT NULL THEN 1
         WHEN b.stay_id IS NOT NULL THEN 2
         ELSE 0 END AS label
FROM mimiciv_icu.icustays i
JOIN mimiciv_hosp.admissions a ON a.hadm_id = i.hadm_id
JOIN vigil_features.outcome_events c ON c.stay_id = i.stay_id AND c.outcome = 'cohort_pe_thrombolysis'
LEFT JOIN vigil_features.outcome_events b ON b.stay_id = i.stay_id AND b.outcome = 'major_bleeding'
WHERE a.dischtime IS NOT NULL
  AND a.dischtime <= :as_of
