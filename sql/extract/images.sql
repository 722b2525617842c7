-- Imaging (MIMIC-CXR layout). MIMIC-CXR stores the study date as YYYYMMDD and the time as
-- HHMMSS.fff; this coarse filter is on whole days, the adapter cuts to (:since, :until] exactly.
SELECT
    r.dicom_id,
    r.study_id,
    r.subject_id,
    r.path,
    m.modality,
    m.viewposition,
    m.studydate,
    m.studytime
FROM mimiciv_cxr.record_list r
JOIN mimiciv_cxr.metadata m ON m.dicom_id = r.dicom_id
WHERE m.studydate >= :since_day
  AND m.studydate <= :until_day
  AND (:open_start = 1 OR r.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR r.subject_id < :subject_to)
