-- As stay_events.sql, charted after :since.
SELECT stay_id, time, arrival_time, code, value, source_row_id
FROM vigil_features.stay_events
WHERE stay_id IN :values AND ingest_night <> :night AND arrival_time <= :t AND time > :since
ORDER BY stay_id, time, value;
