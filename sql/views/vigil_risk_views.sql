-- BI views over the risk table. Plain SQL a BI tool can read (Metabase, Superset, Power BI).

-- The most recent night's score for every stay and model.
DROP VIEW IF EXISTS vigil_risk.latest_risk;
CREATE VIEW vigil_risk.latest_risk AS
SELECT r.*
FROM vigil_risk.risk_scores r
WHERE r.night = (
    SELECT MAX(n.night) FROM vigil_risk.risk_scores n
    WHERE n.stay_id = r.stay_id AND n.model_name = r.model_name
);
