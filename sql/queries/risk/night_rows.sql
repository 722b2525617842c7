SELECT COUNT(*) FROM vigil_risk.risk_scores WHERE night = :night;
