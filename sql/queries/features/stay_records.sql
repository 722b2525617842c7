-- Stored records of the stays in :values (earlier nights, arrived by :t).
SELECT modality, record_id, stay_id, time, arrival_time, category, uri, text, content_hash
FROM vigil_features.stay_records
WHERE stay_id IN :values AND ingest_night <> :night AND arrival_time <= :t;
