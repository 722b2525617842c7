-- Diagnostic ECGs (MIMIC-IV-ECG layout) recorded in (:since, :until], with the cart's
-- measurements where it reported them.
SELECT
    r.study_id,
    r.subject_id,
    r.ecg_time     AS time,
    r.path,
    m.rr_interval,
    m.qrs_onset,
    m.qrs_end,
    m.t_end,
    m.qrs_axis
FROM mimiciv_ecg.record_list r
LEFT JOIN mimiciv_ecg.machine_measurements m ON m.study_id = r.study_id
WHERE r.ecg_time > :since
  AND r.ecg_time <= :until
  AND (:open_start = 1 OR r.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR r.subject_id < :subject_to)
