-- Explanations flattened for tables: one row per score and contributing factor (rank 1 = the
-- largest contribution), from the JSON list in risk_scores.top_factors. A factor's value is
-- text as the model saw it ("F", "not measured", "71.5"); value_numeric holds it as a number
-- where it is one (the same columns as on PostgreSQL).
DROP VIEW IF EXISTS vigil_risk.risk_factors;
CREATE VIEW vigil_risk.risk_factors AS
SELECT r.night, r.stay_id, r.model_name, r.model_version, CAST(f.key AS INTEGER) + 1 AS rank,
       json_extract(f.value, '$.factor') AS factor,
       CASE WHEN json_type(f.value, '$.contribution') IN ('integer', 'real')
            THEN json_extract(f.value, '$.contribution') END AS contribution,
       CASE WHEN json_type(f.value, '$.value') IN ('integer', 'real', 'text')
            THEN CAST(json_extract(f.value, '$.value') AS TEXT) END AS value,
       CASE WHEN json_type(f.value, '$.value') IN ('integer', 'real')
            THEN json_extract(f.value, '$.value') END AS value_numeric
FROM vigil_risk.risk_scores r, json_each(r.top_factors) AS f;
