-- The score distribution of :night, per model (the Vigil page).
SELECT model_name, model_version, probability, risk_band, operating_threshold
FROM vigil_risk.risk_scores
WHERE night = :night;
