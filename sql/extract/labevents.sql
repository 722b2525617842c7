-- Laboratory results that arrived in (:since, :until]. labevents carries no stay_id: the
-- adapter assigns each result to the ICU stay whose time span holds its chart time.
SELECT
    l.labevent_id,
    l.subject_id,
    l.itemid,
    l.charttime                         AS time,
    COALESCE(l.storetime, l.charttime)  AS arrival_time,
    l.value                             AS value_text,
    l.valuenum,
    l.valueuom                          AS source_unit
FROM mimiciv_hosp.labevents l
WHERE COALESCE(l.storetime, l.charttime) > :since
  AND COALESCE(l.storetime, l.charttime) <= :until
  AND (:open_start = 1 OR l.subject_id >= :subject_from)  -- the shard's subjects (pipeline/sources/mimic.py)
  AND (:open_end = 1 OR l.subject_id < :subject_to)
