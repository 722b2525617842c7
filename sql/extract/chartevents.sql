-- Charted ICU events (vital signs, GCS, point-of-care glucose) that arrived in (:since, :until].
-- Arrival is the store time (when the value was validated), falling back to the chart time.
SELECT
    c.subject_id,
    c.stay_id,
    c.itemid,
    c.charttime                         AS time,
    COALESCE(c.storetime, c.charttime)  AS arrival_time,
    c.value                             AS value_text,
    c.valuenum,
    c.valueuom                          AS source_unit
FROM mimiciv_icu.chartevents c
WHERE COALESCE(c.storetime, c.charttime) > :since
  AND COALESCE(c.storetime, c.charttime) <= :until
  AND (:open_start = 1 OR c.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR c.subject_id < :subject_to)
