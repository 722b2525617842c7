-- The model versions the published run of :night scored with (JSON).
SELECT models FROM vigil_audit.runs WHERE night = :night ORDER BY published_at DESC;
