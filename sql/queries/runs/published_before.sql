-- The latest night published before :night (NULL for the first).
SELECT MAX(night) FROM vigil_audit.runs WHERE night < :night;
