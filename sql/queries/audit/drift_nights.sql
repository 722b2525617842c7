-- The latest :limit nights with drift figures.
SELECT DISTINCT night FROM vigil_audit.drift ORDER BY night DESC LIMIT :limit;
