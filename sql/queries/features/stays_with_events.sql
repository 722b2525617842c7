-- Stays in :values with an event stored by an earlier night, charted and arrived by :t.
SELECT DISTINCT stay_id FROM vigil_features.stay_events
WHERE stay_id IN :values AND ingest_night <> :night AND time <= :t AND arrival_time <= :t;
