-- The run that published :night, read inside publish's transaction.
SELECT run_id, started_at, content_sha256 FROM vigil_audit.runs WHERE night = :night;
