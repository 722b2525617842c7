-- Scores of :model on the nights from :first to :night (monitoring against known outcomes).
SELECT night, stay_id, model_name, model_version, prediction_time, probability
FROM vigil_risk.risk_scores
WHERE model_name = :model AND night >= :first AND night <= :night;
