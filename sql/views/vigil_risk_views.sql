-- BI views over the risk table. Plain SQL a BI tool can read (Metabase, Superset, Power BI).

-- Dependents first: a view cannot be dropped while another reads it.
DROP VIEW IF EXISTS vigil_risk.alerts;
DROP VIEW IF EXISTS vigil_risk.risk_history;
DROP VIEW IF EXISTS vigil_risk.latest_risk;

-- The most recent night's score for every stay and model.
CREATE VIEW vigil_risk.latest_risk AS
SELECT r.*
FROM vigil_risk.risk_scores r
WHERE r.night = (
    SELECT MAX(n.night) FROM vigil_risk.risk_scores n
    WHERE n.stay_id = r.stay_id AND n.model_name = r.model_name
);

-- Every published score: one row per night, stay and model (BI tools sort and filter it).
CREATE VIEW vigil_risk.risk_history AS
SELECT r.night, r.stay_id, r.subject_id, r.model_name, r.model_version, r.prediction_time, r.probability,
       r.risk_band, r.probability >= r.operating_threshold AS alert, r.modalities
FROM vigil_risk.risk_scores r;

-- The alert list: each stay's latest score at or above its model's operating threshold.
CREATE VIEW vigil_risk.alerts AS
SELECT l.night, l.stay_id, l.subject_id, l.model_name, l.model_version, l.prediction_time, l.probability,
       l.operating_threshold, l.risk_band, l.modalities, l.top_factors
FROM vigil_risk.latest_risk l
WHERE l.probability >= l.operating_threshold;
