-- Label for ICU in-hospital mortality: known once the hospital admission has ended by :as_of.
-- label = 1 when the patient died in hospital (hospital_expire_flag, or a recorded deathtime).
SELECT
    i.stay_id,
    i.subject_id,
    a.dischtime  AS label_known_time,
    CASE WHEN a.hospital_expire_flag = 1 OR a.deathtime IS NOT NULL THEN 1 ELSE 0 END AS label
FROM mimiciv_icu.icustays i
JOIN mimiciv_hosp.admissions a ON a.hadm_id = i.hadm_id
WHERE a.dischtime IS NOT NULL
  AND a.dischtime <= :as_of
