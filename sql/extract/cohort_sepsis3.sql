-- Sepsis-3 ICU stays (Singer et al., JAMA 2016), built the way mimic-code's `sepsis3` concept
-- builds them from its `suspicion_of_infection` and hourly `sofa` tables:
--
--   suspected infection: a systemic antimicrobial (vigil_features.antibiotic_names; not topical,
--     ophthalmic or otic) started during the ICU stay, with a culture drawn in the 72 h before it
--     (suspicion at the culture) or in the 24 h after it (suspicion at the antimicrobial);
--   organ dysfunction: SOFA >= 2 (the baseline taken as 0) in an hour whose 24 h window ends from
--     48 h before to 24 h after the suspected infection. SOFA is scored per ICU hour, each of its
--     six components at its worst in the 24 h window ending then (mimic-code's sofa.sql):
--       respiration     arterial PaO2 / FiO2 (the FiO2 charted last in the 4 h before the gas):
--                       < 400: 1, < 300: 2, < 200 on a ventilator (a mode charted in the 6 h
--                       before): 3, < 100 so: 4
--       coagulation     platelets < 150 / 100 / 50 / 20 K/uL: 1 / 2 / 3 / 4
--       liver           bilirubin >= 1.2 / 2 / 6 / 12 mg/dL: 1 / 2 / 3 / 4
--       cardiovascular  MAP < 70: 1; dopamine or dobutamine running: 2; dopamine > 5 or any
--                       epinephrine / norepinephrine: 3; dopamine > 15 or epi / norepi > 0.1
--                       mcg/kg/min: 4
--       CNS             GCS (eye + verbal + motor charted together) 13-14 / 10-12 / 6-9 / < 6: 1-4;
--                       an intubated patient's ("No Response-ETT") GCS is taken as 15
--       renal           creatinine >= 1.2 / 2 / 3.5 / 5 mg/dL: 1 / 2 / 3 / 4; urine < 500 / < 200
--                       mL in the window, from the 24th ICU hour on and only where its
--                       measurements span at least 20 h of the window: 3 / 4
--
-- A stay is enrolled from when both criteria were in its record: the latest of the antimicrobial,
-- the culture, the end of the SOFA hour and the arrival of the rows scored in that hour (its
-- earliest such time). Only rows that had arrived by :as_of count: results and charted values
-- from their store time, cultures from when they were drawn (the order is in the record then;
-- one with only a date, from the end of that day), prescriptions from their start.
--
-- Written once for SQLite and PostgreSQL: times are compared in whole seconds of the Julian day
-- count (julianday(t) * 86400); PostgreSQL gets SQLite's julianday(timestamp) and
-- datetime(julian day) from sql/functions/postgresql.
WITH RECURSIVE offsets (n) AS (           -- hours a row reaches forward: 24, more for infusions
    SELECT 0 UNION ALL SELECT n + 1 FROM offsets WHERE n < 999
),
stays AS (
    SELECT i.stay_id, i.subject_id, i.hadm_id,
           ROUND(julianday(i.intime) * 86400) AS in_s,
           ROUND(julianday(CASE WHEN i.outtime IS NULL OR i.outtime > :as_of THEN :as_of ELSE i.outtime END) * 86400) AS out_s
    FROM mimiciv_icu.icustays i
    WHERE i.intime <= :as_of
),
antibiotics AS (
    SELECT DISTINCT s.stay_id, s.subject_id, ROUND(julianday(p.starttime) * 86400) AS abx_s
    FROM mimiciv_hosp.prescriptions p
    JOIN stays s ON s.hadm_id = p.hadm_id
    WHERE p.starttime <= :as_of
      AND ROUND(julianday(p.starttime) * 86400) >= s.in_s
      AND ROUND(julianday(p.starttime) * 86400) < s.out_s
      AND EXISTS (SELECT 1 FROM vigil_features.antibiotic_names a WHERE LOWER(p.drug) LIKE a.pattern)
      AND LOWER(COALESCE(p.route, '')) NOT IN ('ou', 'os', 'od', 'au', 'as', 'ad', 'tp', 'top')
      AND LOWER(COALESCE(p.route, '')) NOT LIKE '%ear%'
      AND LOWER(COALESCE(p.route, '')) NOT LIKE '%eye%'
      AND LOWER(COALESCE(p.route, '')) NOT LIKE '%topical%'
      AND LOWER(p.drug) NOT LIKE '%cream%'
      AND LOWER(p.drug) NOT LIKE '%ointment%'
      AND LOWER(p.drug) NOT LIKE '%ophth%'
      AND LOWER(p.drug) NOT LIKE '% gel%'
      AND LOWER(p.drug) NOT LIKE '%desensitization%'
),
cultures AS (                             -- one per specimen: drawn at, known from
    SELECT m.subject_id,
           MIN(ROUND(julianday(COALESCE(m.charttime, m.chartdate)) * 86400)) AS culture_s,
           MIN(ROUND(julianday(COALESCE(m.charttime, m.chartdate)) * 86400)
               + CASE WHEN m.charttime IS NULL THEN 86400 ELSE 0 END) AS known_s
    FROM mimiciv_hosp.microbiologyevents m
    WHERE COALESCE(m.charttime, m.chartdate) <= :as_of
    GROUP BY m.subject_id, m.micro_specimen_id
),
suspicion AS (
    SELECT a.stay_id, a.abx_s,
           MIN(CASE WHEN c.culture_s <= a.abx_s THEN c.culture_s END) AS culture_before_s,
           MIN(CASE WHEN c.culture_s <= a.abx_s THEN c.known_s END) AS culture_before_known_s,
           MIN(CASE WHEN c.culture_s > a.abx_s THEN c.culture_s END) AS culture_after_s,
           MIN(CASE WHEN c.culture_s > a.abx_s THEN c.known_s END) AS culture_after_known_s
    FROM antibiotics a
    JOIN cultures c ON c.subject_id = a.subject_id
                   AND c.culture_s BETWEEN a.abx_s - 72 * 3600 AND a.abx_s + 24 * 3600
    GROUP BY a.stay_id, a.abx_s
),
infection AS (
    SELECT stay_id,
           COALESCE(culture_before_s, abx_s) AS suspected_s,
           CASE WHEN culture_before_s IS NULL THEN culture_after_known_s
                WHEN culture_before_known_s > abx_s THEN culture_before_known_s   -- a culture known by its date only
                ELSE abx_s END AS known_s
    FROM suspicion
),
infected AS MATERIALIZED (  -- the stays worth scoring, and the span SOFA is read over
    SELECT s.stay_id, s.hadm_id, s.in_s, s.out_s,
           MIN(i.suspected_s) - 72 * 3600 AS from_s, MAX(i.suspected_s) + 24 * 3600 AS to_s
    FROM infection i JOIN stays s ON s.stay_id = i.stay_id
    GROUP BY s.stay_id, s.hadm_id, s.in_s, s.out_s
),
arterial AS (                             -- blood-gas specimens typed arterial (mimic-code's bg.sql)
    SELECT DISTINCT l.specimen_id
    FROM mimiciv_hosp.labevents l
    JOIN infected f ON f.hadm_id = l.hadm_id
    WHERE l.itemid = 52033 AND UPPER(TRIM(l.value)) LIKE 'ART%'
),
labs AS MATERIALIZED (
    SELECT f.stay_id, l.labevent_id, l.itemid, l.valuenum,
           ROUND(julianday(l.charttime) * 86400) AS t_s,
           ROUND(julianday(COALESCE(l.storetime, l.charttime)) * 86400) AS arrival_s,
           CASE WHEN l.specimen_id IN (SELECT specimen_id FROM arterial) THEN 1 ELSE 0 END AS arterial
    FROM mimiciv_hosp.labevents l
    JOIN infected f ON f.hadm_id = l.hadm_id
    WHERE l.itemid IN (51265, 50885, 50912, 50821) AND l.valuenum IS NOT NULL
      AND COALESCE(l.storetime, l.charttime) <= :as_of
      AND ROUND(julianday(l.charttime) * 86400) BETWEEN f.from_s AND f.to_s
),
charted AS MATERIALIZED (
    SELECT f.stay_id, c.itemid, c.value,
           CASE WHEN c.itemid = 223835 AND c.valuenum <= 1 THEN c.valuenum * 100 ELSE c.valuenum END AS valuenum,
           ROUND(julianday(c.charttime) * 86400) AS t_s,
           ROUND(julianday(COALESCE(c.storetime, c.charttime)) * 86400) AS arrival_s
    FROM mimiciv_icu.chartevents c
    JOIN infected f ON f.stay_id = c.stay_id
    WHERE c.itemid IN (220052, 220181, 225312, 220739, 223900, 223901, 223835, 223849)
      AND COALESCE(c.storetime, c.charttime) <= :as_of
      AND ROUND(julianday(c.charttime) * 86400) BETWEEN f.from_s - 6 * 3600 AND f.to_s
),
gases AS (                                -- each arterial PaO2 with the FiO2 charted last before it
    SELECT b.labevent_id, b.stay_id, b.t_s, b.valuenum AS pao2, c.valuenum AS fio2,
           CASE WHEN c.arrival_s > b.arrival_s THEN c.arrival_s ELSE b.arrival_s END AS arrival_s,
           ROW_NUMBER() OVER (PARTITION BY b.labevent_id ORDER BY c.t_s DESC) AS latest
    FROM labs b
    JOIN charted c ON c.stay_id = b.stay_id AND c.itemid = 223835 AND c.valuenum BETWEEN 21 AND 100
                  AND c.t_s BETWEEN b.t_s - 4 * 3600 AND b.t_s
    WHERE b.itemid = 50821 AND b.arterial = 1
),
ventilated AS (
    SELECT DISTINCT g.labevent_id
    FROM gases g
    JOIN charted c ON c.stay_id = g.stay_id AND c.itemid = 223849 AND c.t_s BETWEEN g.t_s - 6 * 3600 AND g.t_s
    WHERE g.latest = 1
),
scored AS MATERIALIZED (  -- (stay, component, time span, points, arrival) with points > 0
    SELECT stay_id, 'coagulation' AS component, t_s AS from_s, t_s AS to_s,
           CASE WHEN valuenum < 20 THEN 4 WHEN valuenum < 50 THEN 3 WHEN valuenum < 100 THEN 2 ELSE 1 END AS points,
           arrival_s
    FROM labs WHERE itemid = 51265 AND valuenum < 150
    UNION ALL
    SELECT stay_id, 'liver', t_s, t_s,
           CASE WHEN valuenum >= 12 THEN 4 WHEN valuenum >= 6 THEN 3 WHEN valuenum >= 2 THEN 2 ELSE 1 END, arrival_s
    FROM labs WHERE itemid = 50885 AND valuenum >= 1.2
    UNION ALL
    SELECT stay_id, 'renal', t_s, t_s,
           CASE WHEN valuenum >= 5 THEN 4 WHEN valuenum >= 3.5 THEN 3 WHEN valuenum >= 2 THEN 2 ELSE 1 END, arrival_s
    FROM labs WHERE itemid = 50912 AND valuenum >= 1.2
    UNION ALL
    SELECT stay_id, 'cardiovascular', t_s, t_s, 1, arrival_s
    FROM charted WHERE itemid IN (220052, 220181, 225312) AND valuenum > 0 AND valuenum < 70
    UNION ALL
    SELECT v.stay_id, 'cardiovascular', v.from_s, v.to_s,
           CASE WHEN v.itemid = 221662 AND v.rate > 15 THEN 4
                WHEN v.itemid IN (221289, 221906) AND v.rate > 0.1 THEN 4
                WHEN v.itemid = 221662 AND v.rate > 5 THEN 3
                WHEN v.itemid IN (221289, 221906) THEN 3
                ELSE 2 END,
           v.arrival_s
    FROM (SELECT e.stay_id, e.itemid,
                 ROUND(julianday(e.starttime) * 86400) AS from_s,
                 ROUND(julianday(COALESCE(e.endtime, e.starttime)) * 86400) AS to_s,
                 ROUND(julianday(COALESCE(e.storetime, e.starttime)) * 86400) AS arrival_s,
                 CASE WHEN LOWER(e.rateuom) = 'mcg/kg/min' THEN e.rate
                      WHEN LOWER(e.rateuom) = 'mcg/min' AND e.patientweight > 0 THEN e.rate / e.patientweight END AS rate
          FROM mimiciv_icu.inputevents e
          JOIN infected f ON f.stay_id = e.stay_id
          WHERE e.itemid IN (221662, 221653, 221289, 221906)     -- dopamine, dobutamine, epinephrine, norepinephrine
            AND COALESCE(e.storetime, e.starttime) <= :as_of
            AND ROUND(julianday(e.starttime) * 86400) <= f.to_s
            AND ROUND(julianday(COALESCE(e.endtime, e.starttime)) * 86400) >= f.from_s) v
    WHERE v.rate > 0
    UNION ALL
    SELECT g.stay_id, 'cns', g.t_s, g.t_s,
           CASE WHEN g.total < 6 THEN 4 WHEN g.total < 10 THEN 3 WHEN g.total < 13 THEN 2 ELSE 1 END, g.arrival_s
    FROM (SELECT stay_id, t_s, SUM(value) AS total, COUNT(*) AS parts, MAX(intubated) AS intubated,
                 MAX(arrival_s) AS arrival_s
          FROM (SELECT stay_id, t_s, itemid, MIN(valuenum) AS value, MAX(arrival_s) AS arrival_s,   -- a repeated row counts once
                       MAX(CASE WHEN itemid = 223900 AND LOWER(value) LIKE '%ett%' THEN 1 ELSE 0 END) AS intubated
                FROM charted WHERE itemid IN (220739, 223900, 223901)
                GROUP BY stay_id, t_s, itemid) parts
          GROUP BY stay_id, t_s) g
    WHERE g.parts = 3 AND g.intubated = 0 AND g.total < 15
    UNION ALL
    SELECT g.stay_id, 'respiration', g.t_s, g.t_s,
           CASE WHEN g.ratio < 100 AND g.ventilated = 1 THEN 4
                WHEN g.ratio < 200 AND g.ventilated = 1 THEN 3
                WHEN g.ratio < 300 THEN 2 ELSE 1 END,
           g.arrival_s
    FROM (SELECT g.stay_id, g.t_s, g.arrival_s, 100.0 * g.pao2 / g.fio2 AS ratio,
                 CASE WHEN v.labevent_id IS NULL THEN 0 ELSE 1 END AS ventilated
          FROM gases g LEFT JOIN ventilated v ON v.labevent_id = g.labevent_id
          WHERE g.latest = 1) g
    WHERE g.ratio < 400
),
component_hours AS (                      -- hour h's window holds [intime + (h - 24) h, intime + h h)
    SELECT r.stay_id, r.component, f.in_s, f.out_s,
           floor((r.from_s - f.in_s) / 3600) + 1 + o.n AS h, r.points, r.arrival_s
    FROM scored r
    JOIN infected f ON f.stay_id = r.stay_id
    JOIN offsets o ON o.n <= floor((r.to_s - f.in_s) / 3600) - floor((r.from_s - f.in_s) / 3600) + 23
),
urine_hours AS (
    SELECT u.stay_id, u.in_s, u.out_s, u.h, SUM(u.ml) AS ml, MAX(u.t_s) - MIN(u.t_s) AS span_s,
           MAX(u.arrival_s) AS arrival_s
    FROM (SELECT f.stay_id, f.in_s, f.out_s, o.t_s, o.arrival_s, o.ml,
                 floor((o.t_s - f.in_s) / 3600) + 1 + n.n AS h
          FROM (SELECT e.stay_id, ROUND(julianday(e.charttime) * 86400) AS t_s,
                       ROUND(julianday(COALESCE(e.storetime, e.charttime)) * 86400) AS arrival_s,
                       CASE WHEN e.itemid = 227488 THEN -e.value ELSE e.value END AS ml
                FROM mimiciv_icu.outputevents e
                WHERE e.itemid IN (226559, 226560, 226561, 226584, 226563, 226564, 226565, 226567,
                                   226557, 226558, 227488, 227489)
                  AND COALESCE(e.storetime, e.charttime) <= :as_of) o
          JOIN infected f ON f.stay_id = o.stay_id AND o.t_s BETWEEN f.from_s - 24 * 3600 AND f.to_s
          JOIN offsets n ON n.n < 24) u
    WHERE u.h >= 24
    GROUP BY u.stay_id, u.in_s, u.out_s, u.h
),
all_hours AS (
    SELECT stay_id, component, in_s, out_s, h, points, arrival_s FROM component_hours
    UNION ALL
    SELECT stay_id, 'renal', in_s, out_s, h, CASE WHEN ml < 200 THEN 4 ELSE 3 END, arrival_s
    FROM urine_hours WHERE ml < 500 AND span_s >= 20 * 3600
),
worst AS (
    SELECT stay_id, in_s, h, component, MAX(points) AS points, MAX(arrival_s) AS arrival_s
    FROM all_hours
    WHERE h >= 1 AND in_s + (h - 1) * 3600 < out_s       -- the ICU hours (of the stay so far)
    GROUP BY stay_id, in_s, h, component
),
sofa AS (
    SELECT stay_id, in_s + h * 3600 AS end_s, SUM(points) AS sofa, MAX(arrival_s) AS arrival_s
    FROM worst
    GROUP BY stay_id, in_s, h
),
sepsis AS (
    SELECT i.stay_id,
           CASE WHEN i.known_s >= s.end_s AND i.known_s >= s.arrival_s THEN i.known_s
                WHEN s.end_s >= s.arrival_s THEN s.end_s
                ELSE s.arrival_s END AS enrolled_s
    FROM infection i
    JOIN sofa s ON s.stay_id = i.stay_id
    WHERE s.sofa >= 2
      AND s.end_s BETWEEN i.suspected_s - 48 * 3600 AND i.suspected_s + 24 * 3600
)
SELECT stay_id, datetime(MIN(enrolled_s) / 86400.0) AS enrolled_time
FROM sepsis
GROUP BY stay_id
HAVING MIN(enrolled_s) <= ROUND(julianday(:as_of) * 86400)
