-- Per source table, how far the nights before :night have ingested.
SELECT source_table, MAX(high_water) AS high_water
FROM vigil_audit.watermarks
WHERE night < :night
GROUP BY source_table;
