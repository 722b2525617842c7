-- Stays in :values with a stored event (earlier nights) charted in (:low, :high]:
-- their windows' edges moved past it since last night.
SELECT DISTINCT stay_id FROM vigil_features.stay_events
WHERE stay_id IN :values AND ingest_night <> :night AND time > :low AND time <= :high;
