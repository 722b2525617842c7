-- Explanations flattened for tables: one row per score and contributing factor (rank 1 = the
-- largest contribution), from the JSON list in risk_scores.top_factors.
DROP VIEW IF EXISTS vigil_risk.risk_factors;
CREATE VIEW vigil_risk.risk_factors AS
SELECT r.night, r.stay_id, r.model_name, r.model_version, f.rank::INTEGER AS rank,
       f.item ->> 'factor' AS factor, (f.item ->> 'contribution')::DOUBLE PRECISION AS contribution,
       (f.item ->> 'value')::DOUBLE PRECISION AS value
FROM vigil_risk.risk_scores r
CROSS JOIN LATERAL json_array_elements(r.top_factors::json) WITH ORDINALITY AS f(item, rank);
