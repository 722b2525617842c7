-- The window features published for :night of the stays in :values (long form).
SELECT stay_id, feature, value FROM vigil_features.stay_features WHERE night = :night AND stay_id IN :values;
