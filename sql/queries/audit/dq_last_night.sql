SELECT MAX(night) AS night FROM vigil_audit.dq_results;
