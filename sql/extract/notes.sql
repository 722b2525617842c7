-- Free-text notes (MIMIC-IV-Note layout) that arrived in (:since, :until].
SELECT r.note_id, r.subject_id, r.hadm_id, r.note_type, r.charttime AS time,
       COALESCE(r.storetime, r.charttime) AS arrival_time, r.text
FROM mimiciv_note.radiology r
WHERE COALESCE(r.storetime, r.charttime) > :since
  AND COALESCE(r.storetime, r.charttime) <= :until
  AND (:open_start = 1 OR r.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR r.subject_id < :subject_to)
UNION ALL
SELECT d.note_id, d.subject_id, d.hadm_id, d.note_type, d.charttime AS time,
       COALESCE(d.storetime, d.charttime) AS arrival_time, d.text
FROM mimiciv_note.discharge d
WHERE COALESCE(d.storetime, d.charttime) > :since
  AND COALESCE(d.storetime, d.charttime) <= :until
  AND (:open_start = 1 OR d.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR d.subject_id < :subject_to)
