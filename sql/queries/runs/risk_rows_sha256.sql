-- The digest of the risk rows published for :night.
SELECT risk_rows_sha256 FROM vigil_audit.runs WHERE night = :night;
