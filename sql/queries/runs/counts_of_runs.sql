-- Row accounting of the runs in :values.
SELECT run_id, source_table, records_in, used, quarantined, excluded
FROM vigil_audit.run_counts
WHERE run_id IN :values;
