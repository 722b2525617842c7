-- The alert conditions recorded for :night.
SELECT condition_key FROM vigil_audit.alerts WHERE night = :night;
