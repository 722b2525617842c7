-- Whether a run of :night is published (its one audit row).
SELECT COUNT(*) FROM vigil_audit.runs WHERE night = :night;
