-- Output volumes (urine, drains) that arrived in (:since, :until], shaped like chartevents rows.
SELECT
    o.subject_id,
    o.stay_id,
    o.itemid,
    o.charttime                         AS time,
    COALESCE(o.storetime, o.charttime)  AS arrival_time,
    CAST(o.value AS VARCHAR(200))       AS value_text,
    o.value                             AS valuenum,
    o.valueuom                          AS source_unit
FROM mimiciv_icu.outputevents o
WHERE COALESCE(o.storetime, o.charttime) > :since
  AND COALESCE(o.storetime, o.charttime) <= :until
  AND (:open_start = 1 OR o.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR o.subject_id < :subject_to)
