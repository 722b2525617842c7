-- The window features published for :night (long form).
SELECT stay_id, feature, value FROM vigil_features.stay_features WHERE night = :night;
