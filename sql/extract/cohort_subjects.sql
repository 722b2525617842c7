-- The subjects with an ICU stay admitted by :until (or with no admission time), for cutting an
-- extraction into shards of subjects (pipeline/sources/mimic.py: subject_shards).
SELECT DISTINCT i.subject_id
FROM mimiciv_icu.icustays i
WHERE i.intime <= :until
   OR i.intime IS NULL
