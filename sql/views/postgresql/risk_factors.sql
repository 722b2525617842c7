-- Explanations flattened for tables: one row per score and contributing factor (rank 1 = the
-- largest contribution), from the JSON list in risk_scores.top_factors. A factor's value is
-- text as the model saw it ("F", "not measured", "71.5"); value_numeric holds it as a number
-- where it is one, so no row's value can make the view fail for its readers.
DROP VIEW IF EXISTS vigil_risk.risk_factors;
CREATE VIEW vigil_risk.risk_factors AS
SELECT r.night, r.stay_id, r.model_name, r.model_version, f.rank::INTEGER AS rank,
       f.item ->> 'factor' AS factor,
       CASE WHEN json_typeof(f.item -> 'contribution') = 'number'
            THEN (f.item ->> 'contribution')::DOUBLE PRECISION END AS contribution,
       f.item ->> 'value' AS value,
       CASE WHEN json_typeof(f.item -> 'value') = 'number'
            THEN (f.item ->> 'value')::DOUBLE PRECISION END AS value_numeric
FROM vigil_risk.risk_scores r
CROSS JOIN LATERAL json_array_elements(r.top_factors::json) WITH ORDINALITY AS f(item, rank);
