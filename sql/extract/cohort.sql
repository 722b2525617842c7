-- Canonical cohort: every ICU stay admitted by the prediction time, with its static fields.
-- `outtime` later than the prediction time is masked to NULL by the adapter (not known yet).
SELECT
    i.stay_id,
    i.subject_id,
    i.hadm_id,
    i.intime          AS admit_time,
    i.outtime         AS discharge_time,
    i.first_careunit  AS unit,
    p.gender          AS sex,
    p.anchor_age,
    p.anchor_year,
    a.admission_type
FROM mimiciv_icu.icustays i
LEFT JOIN mimiciv_hosp.patients p ON p.subject_id = i.subject_id
LEFT JOIN mimiciv_hosp.admissions a ON a.hadm_id = i.hadm_id
WHERE (i.intime <= :until
       OR i.intime IS NULL)  -- extracted so validation quarantines it by name, never silently skipped
  AND (:open_start = 1 OR i.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR i.subject_id < :subject_to)
