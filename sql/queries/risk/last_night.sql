SELECT MAX(night) AS night FROM vigil_risk.risk_scores;
