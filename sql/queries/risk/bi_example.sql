SELECT stay_id, probability, risk_band, modalities, top_factors
FROM vigil_risk.latest_risk ORDER BY probability DESC LIMIT 20;
