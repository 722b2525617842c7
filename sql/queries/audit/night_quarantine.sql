-- The rows and records :night quarantined, with their reasons.
SELECT source_table, record_id, reason FROM vigil_audit.quarantine WHERE night = :night;
