-- Every model's scores of the latest scored night, highest first (vigil top).
SELECT r.night, r.stay_id, r.subject_id, r.model_name, r.probability, r.risk_band, r.modalities, r.top_factors
FROM vigil_risk.risk_scores r
WHERE r.night = (SELECT MAX(night) FROM vigil_risk.risk_scores)
ORDER BY r.model_name, r.probability DESC, r.stay_id;
