-- Explanations flattened for tables: one row per score and contributing factor (rank 1 = the
-- largest contribution), from the JSON list in risk_scores.top_factors.
DROP VIEW IF EXISTS vigil_risk.risk_factors;
CREATE VIEW vigil_risk.risk_factors AS
SELECT r.night, r.stay_id, r.model_name, r.model_version, CAST(f.key AS INTEGER) + 1 AS rank,
       json_extract(f.value, '$.factor') AS factor, json_extract(f.value, '$.contribution') AS contribution,
       json_extract(f.value, '$.value') AS value
FROM vigil_risk.risk_scores r, json_each(r.top_factors) AS f;
