-- Row accounting of the published run of :night.
SELECT source_table, records_in, used, quarantined, excluded
FROM vigil_audit.run_counts
WHERE night = :night;
