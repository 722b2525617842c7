-- Stored events of the stays in :values (earlier nights, arrived by :t), in (stay, time, value) order.
SELECT stay_id, time, arrival_time, code, value, source_row_id
FROM vigil_features.stay_events
WHERE stay_id IN :values AND ingest_night <> :night AND arrival_time <= :t
ORDER BY stay_id, time, value;
