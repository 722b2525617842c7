-- Stays in :values with a record stored by an earlier night, taken and arrived by :t.
SELECT DISTINCT stay_id FROM vigil_features.stay_records
WHERE stay_id IN :values AND ingest_night <> :night AND time <= :t AND arrival_time <= :t;
