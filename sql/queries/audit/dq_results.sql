-- Expectation results of :night.
SELECT source_table, expectation, column_name, success, element_count, unexpected_count
FROM vigil_audit.dq_results
WHERE night = :night;
